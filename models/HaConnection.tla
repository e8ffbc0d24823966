---------------------------- MODULE HaConnection ----------------------------
(***************************************************************************)
(* The HA master's connection lifecycle: accept, register, spawn the       *)
(* reader and the writer, every way a connection ends, and shutdown.      *)
(*                                                                         *)
(* Rust this mirrors (action names are the Rust names where one exists):  *)
(*   src/net/ha.rs               accept_loop, read_reports/write_transfers,*)
(*                               HaMaster::shutdown                        *)
(*   src/lifecycle/ha_connection.rs  HaConnection<P>::register/spawn/close,*)
(*                               guarded + ExitGuard (raise stop, then     *)
(*                               deregister), Drop for state::Running      *)
(*   src/registry/ha.rs          HaRegistry::register/deregister/close_all,*)
(*                               record_ack, count (= table length)        *)
(*   src/core/ha.rs              MasterLink::check_report and              *)
(*                               poll_transmit (AckBounded; restated in    *)
(*                               src/core/ha_model.rs HaModel::judge)      *)
(*                                                                         *)
(* Granularity: one TLA+ step is one critical section of the Rust (one     *)
(* lock of the HaRegistry table, of the accept loop's `connections` map,   *)
(* of a connection's MasterLink, or one StopSignal::stop), except where a  *)
(* comment says two were merged and why that is sound.                     *)
(*                                                                         *)
(* Switches:                                                               *)
(*   UpstreamOrder   RocketMQ 5.1.4's accept loop (#8875): new connection  *)
(*                   (count++ in the constructor), start() the threads,    *)
(*                   THEN addConnection; no reap channel, no connections   *)
(*                   map; shutdown = destroyConnections.                   *)
(*   UpstreamAcks    the classic upstream master takes any 8 bytes as an   *)
(*                   ack (no check; a probe's text becomes an ack).        *)
(*   OldShutdown     src/net/ha.rs before the fix of README finding 1:     *)
(*                   shutdown ran cancel, close_all, drain, close each,    *)
(*                   and the accept loop stored every connection it set    *)
(*                   up without looking at the token. Only the _finding_   *)
(*                   configuration that documents that race sets it.       *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS
    N,                    \* connections accepted at most (ids 1..N, in accept order)
    MaxOffset,            \* the master's log grows from 0 up to MaxOffset
    UpstreamOrder,
    UpstreamAcks,
    OldShutdown

ASSUME N \in Nat \ {0}
ASSUME MaxOffset \in Nat
ASSUME UpstreamOrder \in BOOLEAN /\ UpstreamAcks \in BOOLEAN /\ OldShutdown \in BOOLEAN
ASSUME OldShutdown => ~UpstreamOrder

\* HaRegistry::register hands out ConnId(next_id + 1); naming the i-th accepted socket i loses
\* no behaviour, as connections are interchangeable, and saves TLC the permutations.
Conns   == 1 .. N
NoConn  == 0                       \* "no connection" (the accept loop is at its select, ...)
Tasks   == {"reader", "writer"}
None    == -1                      \* ack before the first valid report
\* A report is an i64. MaxOffset + 1 stands for every value beyond the log (a health check's
\* text read as an offset, a negative value, a bogus offset); 0 .. MaxOffset are the values a
\* slave can send, valid or not (backwards, beyond what was sent) depending on the link.
Offsets == 0 .. MaxOffset + 1

VARIABLES
    \* --- HaRegistry (src/registry/ha.rs) ---
    table,        \* SUBSET Conns: the rows (Table.rows keys)
    closed,       \* Table.closed: close_all ran, register refuses
    counter,      \* upstream's separate connectionCount (unused when ~UpstreamOrder)
    maxOffset,    \* CommitLog::max_offset
    \* --- one connection's MasterLink (src/core/ha.rs), shared by its reader and writer ---
    ack,          \* [Conns -> None \cup Offsets]: MasterData.ack, the last valid report. While
                  \*   c is in the table it is also Row.ack (record_ack runs inside the link's
                  \*   critical section; it keeps the max, and link acks never go back).
                  \*   Upstream: the connection's slaveAckOffset.
    sent,         \* [Conns -> 0 .. MaxOffset]: MasterData.next, what poll_transmit handed out
    ackHigh,      \* history: the highest ack the link ever held (for "never goes backwards")
    \* --- one connection (src/lifecycle/ha_connection.rs) ---
    phase,        \* [Conns -> {"Free","Init","Registered","Running","Closed"}]: HaConnection<P>;
                  \*   "Free" = not accepted yet, "Closed" = closed or dropped
    task,         \* [Conns -> [Tasks -> {"Idle","Running","Exiting","Done"}]]
                  \*   Idle: not spawned; Exiting: ended, stop raised, row not yet removed;
                  \*   Done: deregistered and the future dropped (TaskGauge decremented)
    stop,         \* [Conns -> BOOLEAN]: the connection's StopSignal
    peer,         \* [Conns -> {"None","Open","Closed"}]: the TCP connection
    \* --- the accept loop (src/net/ha.rs accept_loop) ---
    cur,          \* the connection the accept loop is setting up, or NoConn
    acceptClose,  \* "No" | "Stop" | "Deregister": the loop found the token cancelled and is
                  \*   closing `cur` (running.close(Shutdown)) instead of storing it; the value
                  \*   is close's next step
    acceptLoop,   \* "Running" | "Exited"
    map,          \* SUBSET Conns: accept_loop's `connections` (HaConnection<Running> shells)
    \* --- HaMaster::shutdown (src/net/ha.rs) ---
    cancelled,    \* the CancellationToken
    sd,           \* shutdown's last step done:
                  \*   "Serving" | "Cancelled" | "Drained" | "ClosedAll" | "Returned"
    closing,      \* SUBSET Conns: drained from the map by shutdown, close not started yet
    sdCur         \* the connection whose close shutdown is in (stop raised, row not yet
                  \*   deregistered), or NoConn

vars == <<table, closed, counter, maxOffset, ack, sent, ackHigh, phase, task, stop, peer,
          cur, acceptClose, acceptLoop, map, cancelled, sd, closing, sdCur>>

-----------------------------------------------------------------------------
(* Helpers *)

Alive(c, t)   == task[c][t] \in {"Running", "Exiting"}
AnyAlive(c)   == \E t \in Tasks : Alive(c, t)
Max(a, b)     == IF a >= b THEN a ELSE b
\* The count the table reports. Ours is derived (HaRegistry::count = rows.len()).
Count         == IF UpstreamOrder THEN counter ELSE Cardinality(table)

TypeOK ==
    /\ table \subseteq Conns
    /\ closed \in BOOLEAN
    /\ counter \in Int
    /\ maxOffset \in 0 .. MaxOffset
    /\ ack \in [Conns -> {None} \cup Offsets]
    /\ sent \in [Conns -> 0 .. MaxOffset]
    /\ ackHigh \in [Conns -> {None} \cup Offsets]
    /\ phase \in [Conns -> {"Free", "Init", "Registered", "Running", "Closed"}]
    /\ task \in [Conns -> [Tasks -> {"Idle", "Running", "Exiting", "Done"}]]
    /\ stop \in [Conns -> BOOLEAN]
    /\ peer \in [Conns -> {"None", "Open", "Closed"}]
    /\ cur \in Conns \cup {NoConn}
    /\ acceptClose \in {"No", "Stop", "Deregister"}
    /\ acceptLoop \in {"Running", "Exited"}
    /\ map \subseteq Conns
    /\ cancelled \in BOOLEAN
    /\ sd \in {"Serving", "Cancelled", "Drained", "ClosedAll", "Returned"}
    /\ closing \subseteq Conns
    /\ sdCur \in Conns \cup {NoConn}

Init ==
    /\ table = {} /\ closed = FALSE /\ counter = 0 /\ maxOffset = 0
    /\ ack = [c \in Conns |-> None] /\ sent = [c \in Conns |-> 0]
    /\ ackHigh = [c \in Conns |-> None]
    /\ phase = [c \in Conns |-> "Free"]
    /\ task = [c \in Conns |-> [t \in Tasks |-> "Idle"]]
    /\ stop = [c \in Conns |-> FALSE]
    /\ peer = [c \in Conns |-> "None"]
    /\ cur = NoConn /\ acceptClose = "No" /\ acceptLoop = "Running" /\ map = {}
    /\ cancelled = FALSE /\ sd = "Serving" /\ closing = {} /\ sdCur = NoConn

\* Removing rows (HaRegistry::deregister, idempotent; close_all). The row's ack goes with it.
\* In our order a row is never added back and its connection's tasks have been told to stop or
\* will be, so the link's fields no longer matter to any invariant: they are reset with the
\* row to keep TLC's state space small (see Report for what a report does after that).
\* Upstream's connection keeps its fields (addConnection may come after the reports).
RemoveRows(S) ==
    /\ table' = table \ S
    /\ IF UpstreamOrder
         THEN UNCHANGED <<ack, sent, ackHigh>>
         ELSE /\ ack' = [c \in Conns |-> IF c \in S THEN None ELSE ack[c]]
              /\ sent' = [c \in Conns |-> IF c \in S THEN 0 ELSE sent[c]]
              /\ ackHigh' = [c \in Conns |-> IF c \in S THEN None ELSE ackHigh[c]]

LinkVars == <<ack, sent, ackHigh>>

-----------------------------------------------------------------------------
(* The environment: peers and the log *)

\* A peer connects and the accept loop's `listener.accept()` returns it (net/ha.rs accept_loop).
\* tokio::select! is not biased, so even after cancel the loop may take more accepts.
\* Upstream: `new DefaultHAConnection(sc)` increments connectionCount in its constructor.
Accept(c) ==
    /\ acceptLoop = "Running" /\ cur = NoConn /\ phase[c] = "Free"
    /\ IF c = 1 THEN TRUE ELSE phase[c - 1] /= "Free"    \* accept order = id order
    /\ phase' = [phase EXCEPT ![c] = "Init"]
    /\ peer' = [peer EXCEPT ![c] = "Open"]
    /\ cur' = c
    /\ counter' = IF UpstreamOrder THEN counter + 1 ELSE counter
    /\ UNCHANGED <<table, closed, maxOffset, LinkVars, task, stop, acceptClose, acceptLoop,
                   map, cancelled, sd, closing, sdCur>>

\* HaMaster::append: the log grows.
Append ==
    /\ maxOffset < MaxOffset
    /\ maxOffset' = maxOffset + 1
    /\ UNCHANGED <<table, closed, counter, LinkVars, phase, task, stop, peer,
                   cur, acceptClose, acceptLoop, map, cancelled, sd, closing, sdCur>>

-----------------------------------------------------------------------------
(* The accept loop: Register -> Spawn -> Insert, one connection at a time *)

\* HaConnection<Init>::register -> HaRegistry::register (one table critical section).
\* Refused after close_all: HaRegisterFailed hands the connection back and the loop closes it
\* (HaConnection<Init>::close, CloseReason::Rejected); the socket is dropped.
\* The MasterLink is created right after (ack None, next = the log's min offset, 0 here).
\* Upstream order: this is `addConnection(conn)`, which runs AFTER `conn.start()` and has no
\* closed check.
Register(c) ==
    /\ cur = c
    /\ IF UpstreamOrder
         THEN /\ phase[c] = "Running"            \* start() already ran
              /\ table' = table \cup {c}
              /\ cur' = NoConn
              /\ UNCHANGED <<phase, peer>>
         ELSE /\ phase[c] = "Init"
              /\ IF closed
                   THEN /\ phase' = [phase EXCEPT ![c] = "Closed"]
                        /\ peer' = [peer EXCEPT ![c] = "Closed"]
                        /\ cur' = NoConn
                        /\ UNCHANGED table
                   ELSE /\ table' = table \cup {c}
                        /\ phase' = [phase EXCEPT ![c] = "Registered"]
                        /\ UNCHANGED <<cur, peer>>
    /\ UNCHANGED <<closed, counter, maxOffset, LinkVars, task, stop, acceptClose, acceptLoop,
                   map, cancelled, sd, closing, sdCur>>

\* HaConnection<Registered>::spawn: start the reader and the writer (each wrapped by `guarded`).
\* Upstream order: `conn.start()` straight from the constructor, before any add.
Spawn(c) ==
    /\ cur = c
    /\ phase[c] = IF UpstreamOrder THEN "Init" ELSE "Registered"
    /\ phase' = [phase EXCEPT ![c] = "Running"]
    /\ task' = [task EXCEPT ![c] = [t \in Tasks |-> "Running"]]
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, stop, peer,
                   cur, acceptClose, acceptLoop, map, cancelled, sd, closing, sdCur>>

\* accept_loop: `let mut open = connections.lock(); if cancel.is_cancelled() { drop(open);
\* running.close(Shutdown) } else { open.insert(id, running) }` -- one critical section of the
\* map. Shutdown cancels before it drains the map under the same lock, so a connection is either
\* stored before the drain (and closed by shutdown) or closed here (CloseStop/CloseDeregister).
\* OldShutdown: the loop inserted unconditionally.
Insert(c) ==
    /\ ~UpstreamOrder
    /\ cur = c /\ phase[c] = "Running" /\ acceptClose = "No"
    /\ IF cancelled /\ ~OldShutdown
         THEN /\ acceptClose' = "Stop"
              /\ UNCHANGED <<map, cur>>
         ELSE /\ map' = map \cup {c}
              /\ cur' = NoConn
              /\ UNCHANGED acceptClose
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, phase, task, stop, peer,
                   acceptLoop, cancelled, sd, closing, sdCur>>

\* accept_loop's reap branch: a task that returned sent its id (`s1.reap.send(ctx.id)` in
\* net/ha.rs); the loop does `connections.lock().remove(&id)` and drops the shell. Dropping an
\* HaConnection<Running> raises the stop signal, aborts both tasks, then its Registration
\* deregisters. Merged into one step (map lock, stop, deregister): the model's Reap comes after
\* the ended task raised the stop signal, so the drop's stop() changes nothing, and between the
\* map removal and the deregister the state (stop raised, row present, not in the map) is
\* allowed by every invariant; abort only makes the tasks' StopSeen happen sooner.
\* Abstractions: the pending message is "some task of c has ended"; in the Rust the message is
\* sent before `guarded` raises the stop signal (README Findings 4), and a task that panics
\* sends none (Findings 3).
Reap(c) ==
    /\ ~UpstreamOrder
    /\ acceptLoop = "Running" /\ cur = NoConn /\ c \in map
    /\ \E t \in Tasks : task[c][t] \in {"Exiting", "Done"}
    /\ map' = map \ {c}
    /\ stop' = [stop EXCEPT ![c] = TRUE]
    /\ RemoveRows({c})
    /\ phase' = [phase EXCEPT ![c] = "Closed"]
    /\ UNCHANGED <<closed, counter, maxOffset, task, peer, cur, acceptClose,
                   acceptLoop, cancelled, sd, closing, sdCur>>

\* The select sees the cancellation and breaks (dropping the reap receiver).
AcceptLoopExit ==
    /\ acceptLoop = "Running" /\ cancelled /\ cur = NoConn
    /\ acceptLoop' = "Exited"
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, phase, task, stop, peer,
                   cur, acceptClose, map, cancelled, sd, closing, sdCur>>

-----------------------------------------------------------------------------------------------------------------------------------------------------
(* The connection's tasks (net/ha.rs read_reports / write_transfers inside `guarded`) *)

\* `guarded`'s exit, second half: `exit.registration.close(&reason)` -> HaRegistry::deregister
\* (idempotent, one critical section of the table); then the future completes and is dropped
\* (Tracked::drop decrements the TaskGauge), merged, as nothing observes the difference. When
\* the second task is done, both socket halves are dropped, so the peer sees the close (or had
\* closed: eof). Upstream: removeConnection(conn); only the reader decrements connectionCount.
Finish(c, t, eof) ==
    /\ task' = [task EXCEPT ![c][t] = "Done"]
    /\ RemoveRows({c})
    /\ counter' = IF UpstreamOrder /\ t = "reader" THEN counter - 1 ELSE counter
    /\ peer' = IF eof \/ \A u \in Tasks \ {t} : task[c][u] = "Done"
                 THEN [peer EXCEPT ![c] = "Closed"] ELSE peer

\* A task's future returns (or unwinds, or is aborted): `guarded` (or ExitGuard::drop) raises
\* the stop signal, then deregisters. Merged with the return: between "returned" and "stop
\* raised" the task takes no lock (see README Findings 4 for its reap message).
\* If the signal was already raised, StopSignal::stop is one atomic swap that changes nothing,
\* so the task's end has one critical section, the deregister, and is one step (Finish).
\* Otherwise it raises the signal (its waiters' lock) and the deregister is a later step
\* (Deregister); "Exiting" is that window: stop raised, row not yet removed.
\* Upstream: state = SHUTDOWN, makeStop() on itself and on the other thread, removeConnection.
EndTask(c, t, eof) ==
    IF stop[c]
      THEN /\ Finish(c, t, eof)
           /\ UNCHANGED stop
      ELSE /\ task' = [task EXCEPT ![c][t] = "Exiting"]
           /\ stop' = [stop EXCEPT ![c] = TRUE]
           /\ peer' = IF eof THEN [peer EXCEPT ![c] = "Closed"] ELSE peer
           /\ UNCHANGED <<table, counter, LinkVars>>

\* Everything but the task's own variables (task, stop, peer, table, counter, the link).
TaskUnchanged == UNCHANGED <<closed, maxOffset, phase, cur, acceptClose, acceptLoop, map,
                             cancelled, sd, closing, sdCur>>

\* The peer closes (a slave going away, or a health check that connects and closes at once)
\* and the reader's read returns Ok(0): CloseReason::PeerClosed.
\* Merged into one step, and only while the reader runs. This is a reduction, sound for every
\* property checked here: the close only matters to the reader (it ends it, and stops reports
\* and idle timeouts on that socket), no invariant reads `peer`, and every other step commutes
\* with it. So a close that comes earlier (right after Accept, before Register or Spawn, or
\* while the reader is busy) is the same behaviour with the close moved to the moment the
\* reader sees EOF, and a close after the reader ended changes nothing before the last task's
\* Deregister drops the socket anyway. The probe that connects and closes at once is therefore
\* Accept, then this step as soon as the reader runs (upstream: before addConnection).
PeerClose(c) ==
    /\ task[c]["reader"] = "Running" /\ peer[c] = "Open"
    /\ EndTask(c, "reader", TRUE)
    /\ TaskUnchanged

\* The reader decodes an 8-byte report o: MasterLink::handle_bytes -> check_report, then
\* drain_events records a valid one with HaRegistry::record_ack, all under the link's lock:
\* one step. check_report accepts o only if
\*   0 <= o <= the master's max offset, and, once the link has an ack,
\*   o >= that ack (never backwards) and o <= next (at most what was sent);
\* the first valid report sets next = o. Anything else (a health check's text, a bogus or
\* negative offset, a report that goes back or beyond what was sent) closes the link:
\* MasterEvent::Closed(Protocol), the reader returns CloseReason::ProtocolError.
\* Once the row is gone (our order), record_ack does nothing and the link's fields were reset
\* with the row (RemoveRows): a valid report then changes nothing that matters (not a step);
\* an invalid one still ends the reader.
\* Abstraction: the link's own copy of the max offset (MasterData.local_max, refreshed by the
\* writer) is at most the log's, so checking against the log's accepts at least every report
\* the Rust accepts.
\* Upstream classic master: every report is taken as the ack (slaveAckOffset = the report).
ReportValid(c, o) ==
    /\ o <= maxOffset
    /\ ack[c] /= None => o >= ack[c] /\ o <= sent[c]

Report(c, o) ==
    /\ task[c]["reader"] = "Running" /\ peer[c] = "Open"
    /\ IF ReportValid(c, o) \/ UpstreamAcks
         THEN /\ ack[c] /= o                      \* the same ack again changes nothing
              /\ UpstreamOrder \/ c \in table
              /\ ack' = [ack EXCEPT ![c] = o]
              /\ sent' = IF ack[c] = None /\ ~UpstreamAcks
                           THEN [sent EXCEPT ![c] = o] ELSE sent
              /\ ackHigh' = [ackHigh EXCEPT ![c] = Max(@, o)]
              /\ UNCHANGED <<task, stop, peer, table, counter>>
         ELSE EndTask(c, "reader", FALSE)
    /\ TaskUnchanged

\* The writer's link step: handle_local_max(log max), then poll_transmit hands out the next
\* transfer, from `next` up to the log's end (capped by the batch size and the segment end,
\* so any amount); nothing before the first valid report. One critical section of the link.
\* The bytes may then be written or not (the stop signal wins the biased select); the check
\* only depends on `next`.
Transfer(c) ==
    /\ task[c]["writer"] = "Running"
    /\ ack[c] /= None /\ sent[c] < maxOffset
    /\ \E n \in sent[c] + 1 .. maxOffset : sent' = [sent EXCEPT ![c] = n]
    /\ UNCHANGED <<table, closed, counter, maxOffset, ack, ackHigh, phase, task, stop, peer,
                   cur, acceptClose, acceptLoop, map, cancelled, sd, closing, sdCur>>

\* MasterLink's housekeeping: nothing valid read for housekeeping_ms. Either task may be the
\* one that drains the Closed(Idle) event (both call handle_timeout). CloseReason::IdleTimeout.
IdleTimeout(c, t) ==
    /\ task[c][t] = "Running" /\ peer[c] = "Open"
    /\ EndTask(c, t, FALSE)
    /\ TaskUnchanged

\* An IO error (a write to a reset socket, a log read error: the task returns), or a panic
\* (the future unwinds; ExitGuard::drop raises the stop signal and deregisters).
TaskFail(c, t) ==
    /\ task[c][t] = "Running"
    /\ EndTask(c, t, FALSE)
    /\ TaskUnchanged

\* The task's select sees `ctx.stop.stopped()` (or it was aborted at an await point; the
\* abort drops the future, and ExitGuard::drop runs the same exit). CloseReason::Shutdown.
\* The signal is raised, so this is EndTask's one-step case.
StopSeen(c, t) ==
    /\ task[c][t] = "Running" /\ stop[c]
    /\ EndTask(c, t, FALSE)
    /\ TaskUnchanged

\* The deregister of a task whose end raised the stop signal (EndTask's two-step case).
Deregister(c, t) ==
    /\ task[c][t] = "Exiting"
    /\ Finish(c, t, FALSE)
    /\ UNCHANGED stop
    /\ TaskUnchanged

-----
(* HaMaster::shutdown: cancel; drain the map; close each; close_all; wait; drop.           *)
(* OldShutdown: cancel; close_all; drain the map; close each; wait; drop.                  *)

\* `self.cancel.cancel()`.
\* Upstream (merged, taken while the accept thread is at rest: acceptSocketService.shutdown
\* joins it): destroyConnections() shuts every listed connection down (raises its stop flag)
\* and clears the list.
Cancel ==
    /\ sd = "Serving"
    /\ cancelled' = TRUE
    /\ IF UpstreamOrder
         THEN /\ cur = NoConn
              /\ closed' = TRUE
              /\ RemoveRows(table)
              /\ stop' = [c \in Conns |-> stop[c] \/ c \in table]
              /\ sd' = "ClosedAll"
         ELSE /\ sd' = "Cancelled"
              /\ UNCHANGED <<table, closed, stop, LinkVars>>
    /\ UNCHANGED <<counter, maxOffset, phase, task, peer, cur, acceptClose,
                   acceptLoop, map, closing, sdCur>>

\* `self.connections.lock().drain()` (one critical section of the map), collected into `open`.
Drain ==
    /\ ~UpstreamOrder
    /\ sd = IF OldShutdown THEN "ClosedAll" ELSE "Cancelled"
    /\ closing' = map
    /\ map' = {}
    /\ sd' = "Drained"
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, phase, task, stop, peer,
                   cur, acceptClose, acceptLoop, cancelled, sdCur>>

\* HaConnection<Running>::close(Shutdown), first step: `self.state.stop.stop()`. Called by
\* shutdown's `for connection in open` (one connection at a time, in the map's order) and by the
\* accept loop for a connection it set up after the token was cancelled. If the signal is
\* already raised (a task ended), stop() is one atomic swap that changes nothing: the close is
\* then its deregister alone (CloseDeregister takes the connection directly).
ShutdownPicks(c) == sd = "Drained" /\ sdCur = NoConn /\ c \in closing

CloseStop(c) ==
    /\ ~stop[c]
    /\ \/ /\ ShutdownPicks(c)
          /\ closing' = closing \ {c}
          /\ sdCur' = c
          /\ UNCHANGED acceptClose
       \/ /\ c = cur /\ acceptClose = "Stop"
          /\ acceptClose' = "Deregister"
          /\ UNCHANGED <<closing, sdCur>>
    /\ stop' = [stop EXCEPT ![c] = TRUE]
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, phase, task, peer,
                   cur, acceptLoop, map, cancelled, sd>>

\* HaConnection<Running>::close, second step: `self.state.registration.close(&reason)` ->
\* HaRegistry::deregister (a no-op if a task or close_all removed the row); then the
\* Running state is dropped, which aborts both tasks (their StopSeen, as the stop signal is
\* raised). The accept loop then returns to its select.
CloseDeregister(c) ==
    /\ \/ /\ c = sdCur
          /\ sdCur' = NoConn
          /\ UNCHANGED <<closing, cur, acceptClose>>
       \/ /\ ShutdownPicks(c) /\ stop[c]
          /\ closing' = closing \ {c}
          /\ UNCHANGED <<sdCur, cur, acceptClose>>
       \/ /\ c = cur
          /\ acceptClose = "Deregister" \/ (acceptClose = "Stop" /\ stop[c])
          /\ cur' = NoConn
          /\ acceptClose' = "No"
          /\ UNCHANGED <<closing, sdCur>>
    /\ RemoveRows({c})
    /\ phase' = [phase EXCEPT ![c] = "Closed"]
    /\ UNCHANGED <<closed, counter, maxOffset, task, stop, peer, acceptLoop, map,
                   cancelled, sd>>

\* HaRegistry::close_all: refuse new registrations and remove every row, atomically (one
\* critical section of the table). It does not raise any stop signal. Now it runs after every
\* drained connection was closed; OldShutdown ran it straight after cancel.
CloseAll ==
    /\ ~UpstreamOrder
    /\ IF OldShutdown
         THEN sd = "Cancelled"
         ELSE sd = "Drained" /\ closing = {} /\ sdCur = NoConn
    /\ closed' = TRUE
    /\ RemoveRows(table)
    /\ sd' = "ClosedAll"
    /\ UNCHANGED <<counter, maxOffset, phase, task, stop, peer, cur, acceptClose,
                   acceptLoop, map, cancelled, closing, sdCur>>

\* The grace wait ends (all tasks gone, or the deadline) and shutdown returns.
ShutdownReturn ==
    /\ IF OldShutdown
         THEN sd = "Drained" /\ closing = {} /\ sdCur = NoConn
         ELSE sd = "ClosedAll"
    /\ sd' = "Returned"
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, phase, task, stop, peer,
                   cur, acceptClose, acceptLoop, map, cancelled, closing, sdCur>>

\* The HaMaster value is dropped at the end of shutdown and the accept loop has dropped its
\* clone of the `connections` Arc: anything still in the map is dropped (stop, abort,
\* deregister), as in Reap. Only OldShutdown can leave anything there.
DropMap ==
    /\ sd = "Returned" /\ acceptLoop = "Exited" /\ map /= {}
    /\ stop' = [c \in Conns |-> stop[c] \/ c \in map]
    /\ RemoveRows(map)
    /\ phase' = [c \in Conns |-> IF c \in map THEN "Closed" ELSE phase[c]]
    /\ map' = {}
    /\ UNCHANGED <<closed, counter, maxOffset, task, peer, cur, acceptClose,
                   acceptLoop, cancelled, sd, closing, sdCur>>

-----------------------------------------------------------------------------

\* Everything has stopped: allowed to stutter, so that TLC's deadlock check flags any other
\* state with no successor (a lifecycle stuck half-way).
Terminated ==
    /\ acceptLoop = "Exited" /\ sd = "Returned" /\ map = {} /\ cur = NoConn
    /\ \A c \in Conns : ~AnyAlive(c) /\ peer[c] /= "Open"

\* The steps the server takes by itself (given weak fairness below).
Server ==
    \/ \E c \in Conns : \/ Register(c) \/ Spawn(c) \/ Insert(c) \/ Reap(c)
                        \/ Transfer(c) \/ CloseStop(c) \/ CloseDeregister(c)
                        \/ \E t \in Tasks : StopSeen(c, t) \/ Deregister(c, t)
    \/ AcceptLoopExit \/ Drain \/ CloseAll \/ ShutdownReturn \/ DropMap

\* What peers, faults and the operator may do (no fairness).
Environment ==
    \/ Append \/ Cancel
    \/ \E c \in Conns :
         \/ Accept(c) \/ PeerClose(c)
         \/ \E o \in Offsets : Report(c, o)
         \/ \E t \in Tasks : IdleTimeout(c, t) \/ TaskFail(c, t)

Next == Server \/ Environment \/ (Terminated /\ UNCHANGED vars)

\* Weak fairness of the server steps as one group. Without UpstreamAcks every step moves some
\* component forward (a valid report raises the ack, a transfer raises `next`, the log only
\* grows), so the state graph has no cycle but stuttering and every behaviour ends in a state
\* it stays in; group fairness then says no server step is enabled there, which is all that
\* per-action fairness would add.
Spec == Init /\ [][Next]_vars /\ WF_vars(Server)

-----------------------------------------------------------------------------
(* Invariants (names as in DESIGN.md and the Rust) *)

\* Shutdown has removed the connection's row (close_all) and will still raise its stop signal.
\* Now: only the connection the accept loop is setting up when the token is cancelled can be in
\* that window (close_all may run between its `register` and its look at the token; the loop
\* then closes it). OldShutdown: shutdown still had the handle to drain or close.
ShutdownWillStop(c) ==
    IF OldShutdown
      THEN (sd = "ClosedAll" /\ (c \in map \/ c = cur)) \/ c \in closing
      ELSE c = cur /\ cancelled

\* A running task's connection is in the table, or its stop signal is raised, or shutdown is
\* about to raise it. (Without the last clause the invariant fails when close_all runs while
\* the accept loop is between `register` and its look at the token: README Findings 2.)
NoRunningUnregistered ==
    \A c \in Conns, t \in Tasks :
        Alive(c, t) => c \in table \/ stop[c] \/ ShutdownWillStop(c)

\* The same, as DESIGN.md words it, without the shutdown clause. Not in any passing config.
NoRunningUnregisteredStrict ==
    \A c \in Conns, t \in Tasks : Alive(c, t) => c \in table \/ stop[c]

\* The count is the table's cardinality.
CountIsTable == Count = Cardinality(table)

\* The code's report rule, as a state (MasterLink::check_report; HaObserved::check_invariants
\* and check_step in src/core/ha_model.rs): an ack is at most the master's max offset and at
\* most what was sent (the first valid report sets `next` to itself, and later ones may not
\* pass it); nothing is sent before the first report; what was sent is in the log; an ack
\* never went backwards (ackHigh); and only a connection with a valid report counts for sync
\* replication (HaRegistry::acked_at_least counts rows whose ack is set, and is at least o).
Acked(o) == {c \in table : ack[c] /= None /\ ack[c] >= o}
AckBounded ==
    /\ \A c \in Conns :
         /\ ack[c] /= None => ack[c] <= maxOffset /\ ack[c] <= sent[c]
         /\ ack[c] = None => sent[c] = 0
         /\ sent[c] <= maxOffset
         /\ ack[c] = ackHigh[c]
    /\ \A o \in Offsets : \A c \in Acked(o) : o <= maxOffset

\* No row outlives both of its tasks (the #8875 leak as a state predicate).
NoDeadEntry ==
    \A c \in table : ~(task[c]["reader"] = "Done" /\ task[c]["writer"] = "Done")

\* When shutdown returns, every task still alive has been told to stop, or is the accept
\* loop's to close (shutdown's grace wait may end at its deadline while the loop is between
\* `register` and its look at the token).
ShutdownStopsEveryTask ==
    sd = "Returned" => \A c \in Conns : AnyAlive(c) => stop[c] \/ ShutdownWillStop(c)

\* A state constraint (HaConnection_acks.cfg): explore only until shutdown starts. The report
\* rule is the link's own (MasterLink), switched on by the row and off by its removal; shutdown
\* only removes rows, which the tasks' own ends already do, so the log can grow in that
\* configuration without multiplying the shutdown interleavings that HaConnection.cfg covers.
BeforeShutdown == ~cancelled

-----------------------------------------------------------------------------
(* Temporal property *)

NoPeerConnected == \A c \in Conns : peer[c] /= "Open"
Clean           == table = {} /\ \A c \in Conns : ~AnyAlive(c)

\* Once no peer is connected and no more accepts happen (a new accept opens a peer), the
\* table eventually becomes empty and stays empty, and no task is alive.
NoLeakAtQuiescence == (<>[]NoPeerConnected) => <>[]Clean

=============================================================================
