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
(*   src/core/ha.rs              MasterLink report validation (AckBounded) *)
(*                                                                         *)
(* Granularity: one TLA+ step is one critical section of the Rust (one     *)
(* lock of the HaRegistry table, of the accept loop's `connections` map,   *)
(* or one atomic flag), except where a comment says two were merged and    *)
(* why that is sound.                                                      *)
(*                                                                         *)
(* Switches:                                                               *)
(*   UpstreamOrder        RocketMQ 5.1.4's accept loop (#8875): new        *)
(*                        connection (count++ in the constructor),         *)
(*                        start() the threads, THEN addConnection; no      *)
(*                        reap channel, no connections map.                *)
(*   UpstreamAcks         the classic upstream master takes any 8 bytes    *)
(*                        as an ack (no bound check; the probe's text      *)
(*                        becomes an ack).                                 *)
(*   AcceptDuringShutdown the accept loop may be between `register` and    *)
(*                        `connections.insert` while HaMaster::shutdown    *)
(*                        runs close_all and drains the map (possible in   *)
(*                        net/ha.rs today: see README "Findings").         *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS
    N,                    \* connections accepted at most (ids 1..N, in accept order)
    MaxOffset,            \* the master's log grows from 0 up to MaxOffset
    UpstreamOrder,
    UpstreamAcks,
    AcceptDuringShutdown

ASSUME N \in Nat \ {0}
ASSUME MaxOffset \in Nat
ASSUME UpstreamOrder \in BOOLEAN /\ UpstreamAcks \in BOOLEAN
       /\ AcceptDuringShutdown \in BOOLEAN

\* HaRegistry::register hands out ConnId(next_id + 1); naming the i-th accepted socket i loses
\* no behaviour, as connections are interchangeable, and saves TLC the permutations.
Conns   == 1 .. N
NoConn  == 0                       \* "the accept loop is at its select"
Tasks   == {"reader", "writer"}
None    == -1                      \* ack before the first valid report
Offsets == 0 .. MaxOffset + 1      \* MaxOffset + 1 is always beyond the log: a bogus report

VARIABLES
    \* --- HaRegistry (src/registry/ha.rs) ---
    table,        \* SUBSET Conns: the rows (Table.rows keys)
    closed,       \* Table.closed: close_all ran, register refuses
    ack,          \* [Conns -> None \cup Offsets]: Row.ack (upstream: the connection's slaveAckOffset)
    counter,      \* upstream's separate connectionCount (unused when ~UpstreamOrder)
    maxOffset,    \* CommitLog::max_offset
    \* --- one connection (src/lifecycle/ha_connection.rs) ---
    phase,        \* [Conns -> {"Free","Init","Registered","Running","Closed"}]: HaConnection<P>;
                  \*   "Free" = not accepted yet, "Closed" = closed or dropped
    task,         \* [Conns -> [Tasks -> {"Idle","Running","Exiting","Done"}]]
                  \*   Idle: not spawned; Exiting: ended, stop raised, row not yet removed;
                  \*   Done: deregistered and the future dropped (TaskGauge decremented)
    stop,         \* [Conns -> BOOLEAN]: the connection's StopSignal
    peer,         \* [Conns -> {"None","Open","Closed"}]: the TCP connection
    \* --- the accept loop and shutdown (src/net/ha.rs) ---
    cur,          \* the connection the accept loop is setting up, or NoConn
    acceptLoop,   \* "Running" | "Exited"
    cancelled,    \* the CancellationToken
    map,          \* SUBSET Conns: accept_loop's `connections` (HaConnection<Running> shells)
    sd,           \* HaMaster::shutdown's progress:
                  \*   "Serving" | "CloseAll" | "Drain" | "Closing" | "Returned"
    closing       \* SUBSET Conns: drained from the map by shutdown, not closed yet

vars == <<table, closed, ack, counter, maxOffset, phase, task, stop, peer,
          cur, acceptLoop, cancelled, map, sd, closing>>

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
    /\ ack \in [Conns -> {None} \cup Offsets]
    /\ counter \in Int
    /\ maxOffset \in 0 .. MaxOffset
    /\ phase \in [Conns -> {"Free", "Init", "Registered", "Running", "Closed"}]
    /\ task \in [Conns -> [Tasks -> {"Idle", "Running", "Exiting", "Done"}]]
    /\ stop \in [Conns -> BOOLEAN]
    /\ peer \in [Conns -> {"None", "Open", "Closed"}]
    /\ cur \in Conns \cup {NoConn}
    /\ acceptLoop \in {"Running", "Exited"}
    /\ cancelled \in BOOLEAN
    /\ map \subseteq Conns /\ closing \subseteq Conns
    /\ sd \in {"Serving", "CloseAll", "Drain", "Closing", "Returned"}

Init ==
    /\ table = {} /\ closed = FALSE /\ ack = [c \in Conns |-> None]
    /\ counter = 0 /\ maxOffset = 0
    /\ phase = [c \in Conns |-> "Free"]
    /\ task = [c \in Conns |-> [t \in Tasks |-> "Idle"]]
    /\ stop = [c \in Conns |-> FALSE]
    /\ peer = [c \in Conns |-> "None"]
    /\ cur = NoConn /\ acceptLoop = "Running" /\ cancelled = FALSE
    /\ map = {} /\ sd = "Serving" /\ closing = {}

\* Removing a row (HaRegistry::deregister, idempotent). The row's ack goes with it.
RemoveRows(S) ==
    /\ table' = table \ S
    /\ ack' = [c \in Conns |-> IF c \in S THEN None ELSE ack[c]]

-----------------------------------------------------------------------------
(* The environment: peers and the log *)

\* A peer connects and the accept loop's `listener.accept()` returns it (net/ha.rs accept_loop).
\* tokio::select! is not biased, so even after cancel the loop may take one more accept.
\* Upstream: `new DefaultHAConnection(sc)` increments connectionCount in its constructor.
Accept(c) ==
    /\ acceptLoop = "Running" /\ cur = NoConn /\ phase[c] = "Free"
    /\ IF c = 1 THEN TRUE ELSE phase[c - 1] /= "Free"    \* accept order = id order
    /\ phase' = [phase EXCEPT ![c] = "Init"]
    /\ peer' = [peer EXCEPT ![c] = "Open"]
    /\ cur' = c
    /\ counter' = IF UpstreamOrder THEN counter + 1 ELSE counter
    /\ UNCHANGED <<table, closed, ack, maxOffset, task, stop, acceptLoop, cancelled,
                   map, sd, closing>>

\* The peer closes: a slave going away, or a health check that connects and closes at once
\* (this can happen right after Accept, before Register or Spawn).
PeerClose(c) ==
    /\ peer[c] = "Open"
    /\ peer' = [peer EXCEPT ![c] = "Closed"]
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, task, stop,
                   cur, acceptLoop, cancelled, map, sd, closing>>

\* HaMaster::append: the log grows.
Append ==
    /\ maxOffset < MaxOffset
    /\ maxOffset' = maxOffset + 1
    /\ UNCHANGED <<table, closed, ack, counter, phase, task, stop, peer,
                   cur, acceptLoop, cancelled, map, sd, closing>>

-----------------------------------------------------------------------------
(* The accept loop: Register -> Spawn -> Insert, one connection at a time *)

\* HaConnection<Init>::register -> HaRegistry::register (one table critical section).
\* Refused after close_all: HaRegisterFailed hands the connection back and the loop closes it
\* (CloseReason::Rejected); the socket is dropped.
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
    /\ UNCHANGED <<closed, ack, counter, maxOffset, task, stop, acceptLoop, cancelled,
                   map, sd, closing>>

\* HaConnection<Registered>::spawn: start the reader and the writer (each wrapped by `guarded`).
\* Upstream order: `conn.start()` straight from the constructor, before any add.
Spawn(c) ==
    /\ cur = c
    /\ phase[c] = IF UpstreamOrder THEN "Init" ELSE "Registered"
    /\ phase' = [phase EXCEPT ![c] = "Running"]
    /\ task' = [task EXCEPT ![c] = [t \in Tasks |-> "Running"]]
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, stop, peer,
                   cur, acceptLoop, cancelled, map, sd, closing>>

\* accept_loop: `connections.lock().insert(id, running)`; the loop returns to its select.
Insert(c) ==
    /\ ~UpstreamOrder
    /\ cur = c /\ phase[c] = "Running"
    /\ map' = map \cup {c}
    /\ cur' = NoConn
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, task, stop, peer,
                   acceptLoop, cancelled, sd, closing>>

\* accept_loop's reap branch: a task that returned sent its id (`s1.reap.send(ctx.id)` in
\* net/ha.rs); the loop does `connections.lock().remove(&id)` and drops the shell. Dropping an
\* HaConnection<Running> raises the stop signal, aborts both tasks, then its Registration
\* deregisters. Merged into one step: the intermediate state (stop raised, row present) is
\* allowed by every invariant, and abort only makes the tasks' StopSeen happen sooner.
\* Abstraction: the pending message is "some task of c has ended"; a task that panics sends
\* nothing in the Rust (see README), which the model does not distinguish.
Reap(c) ==
    /\ ~UpstreamOrder
    /\ acceptLoop = "Running" /\ cur = NoConn /\ c \in map
    /\ \E t \in Tasks : task[c][t] \in {"Exiting", "Done"}
    /\ map' = map \ {c}
    /\ stop' = [stop EXCEPT ![c] = TRUE]
    /\ RemoveRows({c})
    /\ phase' = [phase EXCEPT ![c] = "Closed"]
    /\ UNCHANGED <<closed, counter, maxOffset, task, peer, cur, acceptLoop, cancelled,
                   sd, closing>>

\* The select sees the cancellation and breaks (dropping the reap receiver).
AcceptLoopExit ==
    /\ acceptLoop = "Running" /\ cancelled /\ cur = NoConn
    /\ acceptLoop' = "Exited"
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, task, stop, peer,
                   cur, cancelled, map, sd, closing>>

-----------------------------------------------------------------------------
(* The connection's tasks (net/ha.rs read_reports / write_transfers inside `guarded`) *)

\* A task's future returns (or unwinds): `guarded` raises the stop signal first. Merged with
\* the return itself: between "returned" and "stop raised" the task does nothing observable.
\* Upstream: state = SHUTDOWN, makeStop() on itself and on the other thread.
EndTask(c, t) ==
    /\ task' = [task EXCEPT ![c][t] = "Exiting"]
    /\ stop' = [stop EXCEPT ![c] = TRUE]

\* The reader's read returns Ok(0): CloseReason::PeerClosed.
ReaderEof(c) ==
    /\ task[c]["reader"] = "Running" /\ peer[c] = "Closed"
    /\ EndTask(c, "reader")
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, peer,
                   cur, acceptLoop, cancelled, map, sd, closing>>

\* The reader decodes an 8-byte report o: MasterLink::handle_bytes -> check_report; a valid one
\* is an MasterEvent::Acked that drain_events records with HaRegistry::record_ack (which does
\* nothing once the row is gone). An invalid one (beyond the master's max offset, as a health
\* check's text or a bogus offset is) closes the link: CloseReason::ProtocolError.
\* Upstream classic master: every report is taken as the ack (slaveAckOffset = the report).
Report(c, o) ==
    /\ task[c]["reader"] = "Running" /\ peer[c] = "Open"
    /\ LET valid == o <= maxOffset IN
         IF valid \/ UpstreamAcks
           THEN /\ ack' = IF UpstreamOrder \/ c \in table
                            THEN [ack EXCEPT ![c] = IF UpstreamAcks THEN o ELSE Max(ack[c], o)]
                            ELSE ack
                /\ ack' /= ack
                /\ UNCHANGED <<task, stop>>
           ELSE /\ EndTask(c, "reader")
                /\ UNCHANGED ack
    /\ UNCHANGED <<table, closed, counter, maxOffset, phase, peer,
                   cur, acceptLoop, cancelled, map, sd, closing>>

\* MasterLink's housekeeping: nothing valid read for housekeeping_ms. Either task may be the
\* one that drains the Closed(Idle) event (both call handle_timeout). CloseReason::IdleTimeout.
IdleTimeout(c, t) ==
    /\ task[c][t] = "Running" /\ peer[c] = "Open"
    /\ EndTask(c, t)
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, peer,
                   cur, acceptLoop, cancelled, map, sd, closing>>

\* An IO error (a write to a reset socket, a log read error: the task returns), or a panic
\* (the future unwinds; ExitGuard::drop raises the stop signal and deregisters).
TaskFail(c, t) ==
    /\ task[c][t] = "Running"
    /\ EndTask(c, t)
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, peer,
                   cur, acceptLoop, cancelled, map, sd, closing>>

\* The task's select sees `ctx.stop.stopped()` (or it was aborted at an await point; the
\* abort drops the future, and ExitGuard::drop runs the same exit). CloseReason::Shutdown.
StopSeen(c, t) ==
    /\ task[c][t] = "Running" /\ stop[c]
    /\ EndTask(c, t)
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, peer,
                   cur, acceptLoop, cancelled, map, sd, closing>>

\* `guarded`: `exit.registration.close(&reason)` -> HaRegistry::deregister (idempotent), then
\* the future completes and is dropped (Tracked::drop decrements the TaskGauge); merged, as
\* nothing observes the difference. When the second task is done, both socket halves are
\* dropped, so the peer sees the close.
\* Upstream: removeConnection(conn); only the reader decrements connectionCount.
Deregister(c, t) ==
    /\ task[c][t] = "Exiting"
    /\ task' = [task EXCEPT ![c][t] = "Done"]
    /\ RemoveRows({c})
    /\ counter' = IF UpstreamOrder /\ t = "reader" THEN counter - 1 ELSE counter
    /\ peer' = IF \A u \in Tasks \ {t} : task[c][u] = "Done"
                 THEN [peer EXCEPT ![c] = "Closed"] ELSE peer
    /\ UNCHANGED <<closed, maxOffset, phase, stop, cur, acceptLoop, cancelled,
                   map, sd, closing>>

-----------------------------------------------------------------------------
(* HaMaster::shutdown: cancel; close_all; drain the map; close each; wait; drop *)

\* `self.cancel.cancel()`. When ~AcceptDuringShutdown it is merged with close_all and taken
\* only while the accept loop is at its select (an assumption the Rust does not enforce).
\* Upstream: acceptSocketService.shutdown(true) then destroyConnections(), which shuts every
\* listed connection down (raises its stop flag) and clears the list.
Cancel ==
    /\ sd = "Serving"
    /\ cancelled' = TRUE
    /\ IF AcceptDuringShutdown
         THEN /\ sd' = "CloseAll"
              /\ UNCHANGED <<table, ack, closed, stop>>
         ELSE /\ cur = NoConn
              /\ closed' = TRUE                       \* close_all
              /\ RemoveRows(table)
              /\ stop' = IF UpstreamOrder
                           THEN [c \in Conns |-> stop[c] \/ c \in table] ELSE stop
              /\ sd' = "Drain"
    /\ UNCHANGED <<counter, maxOffset, phase, task, peer, cur, acceptLoop, map,
                   closing>>

\* HaRegistry::close_all: refuse new registrations and remove every row, atomically. It does
\* not raise the connections' stop signals: the Closing steps below do.
CloseAll ==
    /\ sd = "CloseAll"
    /\ closed' = TRUE
    /\ RemoveRows(table)
    /\ sd' = "Drain"
    /\ UNCHANGED <<counter, maxOffset, phase, task, stop, peer, cur, acceptLoop, cancelled,
                   map, closing>>

\* `self.connections.lock().drain()`.
Drain ==
    /\ sd = "Drain"
    /\ closing' = map
    /\ map' = {}
    /\ sd' = "Closing"
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, task, stop, peer,
                   cur, acceptLoop, cancelled>>

\* HaConnection<Running>::close(Shutdown): raise stop, deregister (a no-op after close_all),
\* and the drop aborts both tasks.
CloseConnection(c) ==
    /\ sd = "Closing" /\ c \in closing
    /\ stop' = [stop EXCEPT ![c] = TRUE]
    /\ RemoveRows({c})
    /\ phase' = [phase EXCEPT ![c] = "Closed"]
    /\ closing' = closing \ {c}
    /\ UNCHANGED <<closed, counter, maxOffset, task, peer, cur, acceptLoop, cancelled,
                   map, sd>>

\* The grace wait ends (all tasks gone, or the deadline) and shutdown returns.
ShutdownReturn ==
    /\ sd = "Closing" /\ closing = {}
    /\ sd' = "Returned"
    /\ UNCHANGED <<table, closed, ack, counter, maxOffset, phase, task, stop, peer,
                   cur, acceptLoop, cancelled, map, closing>>

\* The HaMaster value is dropped at the end of shutdown and the accept loop has dropped its
\* clone of the `connections` Arc: anything still in the map is dropped (stop, abort,
\* deregister), as in Reap.
DropMap ==
    /\ sd = "Returned" /\ acceptLoop = "Exited" /\ map /= {}
    /\ stop' = [c \in Conns |-> stop[c] \/ c \in map]
    /\ RemoveRows(map)
    /\ phase' = [c \in Conns |-> IF c \in map THEN "Closed" ELSE phase[c]]
    /\ map' = {}
    /\ UNCHANGED <<closed, counter, maxOffset, task, peer, cur, acceptLoop, cancelled,
                   sd, closing>>

-----------------------------------------------------------------------------

\* Everything has stopped: allowed to stutter, so that TLC's deadlock check flags any other
\* state with no successor (a lifecycle stuck half-way).
Terminated ==
    /\ acceptLoop = "Exited" /\ sd = "Returned" /\ map = {} /\ cur = NoConn
    /\ \A c \in Conns : ~AnyAlive(c) /\ peer[c] /= "Open"

\* The steps the server takes by itself (given weak fairness below).
Server ==
    \/ \E c \in Conns : Register(c) \/ Spawn(c) \/ Insert(c) \/ Reap(c)
                         \/ ReaderEof(c) \/ CloseConnection(c)
                         \/ \E t \in Tasks : StopSeen(c, t) \/ Deregister(c, t)
    \/ AcceptLoopExit \/ CloseAll \/ Drain \/ ShutdownReturn \/ DropMap

\* What peers, faults and the operator may do (no fairness).
Environment ==
    \/ Append \/ Cancel
    \/ \E c \in Conns :
         \/ Accept(c) \/ PeerClose(c)
         \/ \E o \in Offsets : Report(c, o)
         \/ \E t \in Tasks : IdleTimeout(c, t) \/ TaskFail(c, t)

Next == Server \/ Environment \/ (Terminated /\ UNCHANGED vars)

\* Weak fairness of the server steps as one group. Without UpstreamAcks every step moves some
\* component forward, so the state graph has no cycle but stuttering and every behaviour ends in a
\* state it stays in; group fairness then says no server step is enabled there, which is all that
\* per-action fairness would add.
Spec == Init /\ [][Next]_vars /\ WF_vars(Server)

-----------------------------------------------------------------------------
(* Invariants (names as in DESIGN.md and the Rust) *)

\* Shutdown has run close_all and will still raise the connection's stop signal: it has taken
\* the handle from the map, or has yet to drain the map, which holds the handle or is about to
\* (the accept loop inserts the connection it is setting up before it looks at anything else).
ShutdownWillStop(c) == (sd = "Drain" /\ (c \in map \/ c = cur)) \/ c \in closing

\* A running task's connection is in the table, or its stop signal is raised, or shutdown is
\* about to raise it. (Without the last clause the invariant fails at every shutdown:
\* close_all empties the table before the stop signals are raised.)
NoRunningUnregistered ==
    \A c \in Conns, t \in Tasks :
        Alive(c, t) => c \in table \/ stop[c] \/ ShutdownWillStop(c)

\* The same, as DESIGN.md words it, without the shutdown clause. Not in any passing config.
NoRunningUnregisteredStrict ==
    \A c \in Conns, t \in Tasks : Alive(c, t) => c \in table \/ stop[c]

\* The count is the table's cardinality.
CountIsTable == Count = Cardinality(table)

\* A recorded ack never exceeds the master's max offset, and only a connection that has made a
\* valid report counts for sync replication (HaRegistry::acked_at_least counts rows whose ack
\* is set; ack is set only by a valid report, so the two clauses coincide here).
Acked(o) == {c \in table : ack[c] /= None /\ ack[c] >= o}
AckBounded ==
    /\ \A c \in table : ack[c] /= None => ack[c] <= maxOffset
    /\ \A o \in Offsets : \A c \in Acked(o) : o <= maxOffset

\* No row outlives both of its tasks (the #8875 leak as a state predicate).
NoDeadEntry ==
    \A c \in table : ~(task[c]["reader"] = "Done" /\ task[c]["writer"] = "Done")

\* When shutdown returns, every task still alive has been told to stop.
ShutdownStopsEveryTask ==
    sd = "Returned" => \A c \in Conns : AnyAlive(c) => stop[c]

-----------------------------------------------------------------------------
(* Temporal property *)

NoPeerConnected == \A c \in Conns : peer[c] /= "Open"
Clean           == table = {} /\ \A c \in Conns : ~AnyAlive(c)

\* Once no peer is connected and no more accepts happen (a new accept opens a peer), the
\* table eventually becomes empty and stays empty, and no task is alive.
NoLeakAtQuiescence == (<>[]NoPeerConnected) => <>[]Clean

=============================================================================
