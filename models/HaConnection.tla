---------------------------- MODULE HaConnection ----------------------------
(***************************************************************************)
(* The HA master's connection lifecycle: accept, register, spawn the       *)
(* reader and the writer, every way a connection ends, and shutdown.      *)
(*                                                                         *)
(* Rust this mirrors (action names are the Rust names where one exists):  *)
(*   src/lifecycle/acceptor.rs   HaAcceptor::accept (register, Slots::     *)
(*                               begin, spawn, Slots::store), Reaper::drop *)
(*                               (Slots::take), HaAcceptor::shutdown       *)
(*                               (Slots::drain, close each, close_all)     *)
(*   src/lifecycle/ha_connection.rs  HaConnection<P>::register/spawn/close,*)
(*                               gated + Gate, Armed::drop, Drop for       *)
(*                               state::Running                            *)
(*   src/registry/ha.rs          HaRegistry::register/deregister/close_all *)
(*                               (each removal raises the row's stop       *)
(*                               signal under the table lock), record_ack, *)
(*                               count (= table length)                    *)
(*   src/net/ha.rs               accept_loop, read_reports/write_transfers,*)
(*                               HaMaster::shutdown                        *)
(*   src/core/ha.rs              MasterLink::check_report and              *)
(*                               poll_transmit (AckBounded; restated in    *)
(*                               src/core/ha_model.rs HaModel::judge)      *)
(*                                                                         *)
(* Granularity: one TLA+ step is one critical section of the Rust (one     *)
(* lock of the HaRegistry table, of the acceptor's slots, of a             *)
(* connection's MasterLink, or one StopSignal::stop), except where a       *)
(* comment says two were merged and why that is sound.                     *)
(*                                                                         *)
(* Switches:                                                               *)
(*   UpstreamOrder   RocketMQ 5.1.4's accept loop (#8875): new connection  *)
(*                   (count++ in the constructor), start() the threads,    *)
(*                   THEN addConnection; no acceptor slots, no gate;       *)
(*                   shutdown = destroyConnections.                        *)
(*   UpstreamAcks    the classic upstream master takes any 8 bytes as an   *)
(*                   ack (no check; a probe's text becomes an ack).        *)
(*   RemoveWithoutStop  the planted registry fault HaFaults::              *)
(*                   remove_without_stop: HaRegistry::deregister removes   *)
(*                   the row without raising its stop signal (close_all    *)
(*                   still raises it, as in the Rust fault).               *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS
    N,                    \* connections accepted at most (ids 1..N, in accept order)
    MaxOffset,            \* the master's log grows from 0 up to MaxOffset
    UpstreamOrder,
    UpstreamAcks,
    RemoveWithoutStop

ASSUME N \in Nat \ {0}
ASSUME MaxOffset \in Nat
ASSUME UpstreamOrder \in BOOLEAN /\ UpstreamAcks \in BOOLEAN /\ RemoveWithoutStop \in BOOLEAN
ASSUME RemoveWithoutStop => ~UpstreamOrder

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

\* The connection's phase: the HaConnection<P> typestate, refined where spawn takes steps.
\*   Free        not accepted yet
\*   Init        HaConnection<Init>
\*   Registered  HaConnection<Registered>, before Slots::begin
\*   Starting    its slot is open (Slots::begin), spawn not started (upstream: not used)
\*   Spawning    spawn started the reader (upstream: start() started the reader)
\*   Spawned     spawn started both tasks, the gate is still shut
\*   Running     spawn returned: HaConnection<Running> (the gate is open)
\*   Panicked    spawn panicked (Armed::drop): no Running handle ever existed
\*   Refused     closed without ever having a row (register refused)
\*   Closed      closed or dropped after it had a row
Phases == {"Free", "Init", "Registered", "Starting", "Spawning", "Spawned", "Running",
           "Panicked", "Refused", "Closed"}

VARIABLES
    \* --- HaRegistry (src/registry/ha.rs) ---
    table,        \* SUBSET Conns: the rows (Table.rows keys); a row holds its stop signal
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
    phase,        \* [Conns -> Phases]
    task,         \* [Conns -> [Tasks -> {"Idle","Gated","Running","Done"}]]
                  \*   Idle: not spawned; Gated: spawned, waiting at its Gate (it does not run
                  \*   the connection's future yet); Running: past the gate (upstream: spawned);
                  \*   Done: deregistered and the future dropped (TaskGauge decremented)
    stop,         \* [Conns -> BOOLEAN]: the connection's StopSignal
    peer,         \* [Conns -> {"None","Open","Closed"}]: the TCP connection
    \* --- the accept loop (src/net/ha.rs accept_loop -> HaAcceptor::accept) ---
    cur,          \* the connection HaAcceptor::accept is setting up, or NoConn
    acceptLoop,   \* "Running" | "Exited"
    \* --- the acceptor's slots (src/lifecycle/acceptor.rs Slots) ---
    slot,         \* [Conns -> {"No","Open","Held"}]: no slot, an open slot (None: its tasks are
                  \*   being started), or the stored HaConnection<Running> handle (Some)
    \* --- HaMaster::shutdown (src/net/ha.rs) -> HaAcceptor::shutdown ---
    cancelled,    \* the accept loop's CancellationToken
    sd,           \* shutdown's last step done:
                  \*   "Serving" | "Cancelled" | "Drained" | "ClosedAll" | "Returned"
                  \*   (Drained and later: Slots.shut_down is set)
    closing       \* SUBSET Conns: handles Slots::drain took, not closed yet

vars == <<table, closed, counter, maxOffset, ack, sent, ackHigh, phase, task, stop, peer,
          cur, acceptLoop, slot, cancelled, sd, closing>>

-----------------------------------------------------------------------------
(* Helpers *)

Alive(c, t)   == task[c][t] \in {"Gated", "Running"}
AnyAlive(c)   == \E t \in Tasks : Alive(c, t)
Max(a, b)     == IF a >= b THEN a ELSE b
\* The count the table reports. Ours is derived (HaRegistry::count = rows.len()).
Count         == IF UpstreamOrder THEN counter ELSE Cardinality(table)
\* Slots.shut_down: set by Slots::drain, the first step of HaAcceptor::shutdown.
ShutDown      == sd \in {"Drained", "ClosedAll", "Returned"}

TypeOK ==
    /\ table \subseteq Conns
    /\ closed \in BOOLEAN
    /\ counter \in Int
    /\ maxOffset \in 0 .. MaxOffset
    /\ ack \in [Conns -> {None} \cup Offsets]
    /\ sent \in [Conns -> 0 .. MaxOffset]
    /\ ackHigh \in [Conns -> {None} \cup Offsets]
    /\ phase \in [Conns -> Phases]
    /\ task \in [Conns -> [Tasks -> {"Idle", "Gated", "Running", "Done"}]]
    /\ stop \in [Conns -> BOOLEAN]
    /\ peer \in [Conns -> {"None", "Open", "Closed"}]
    /\ cur \in Conns \cup {NoConn}
    /\ acceptLoop \in {"Running", "Exited"}
    /\ slot \in [Conns -> {"No", "Open", "Held"}]
    /\ cancelled \in BOOLEAN
    /\ sd \in {"Serving", "Cancelled", "Drained", "ClosedAll", "Returned"}
    /\ closing \subseteq Conns

Init ==
    /\ table = {} /\ closed = FALSE /\ counter = 0 /\ maxOffset = 0
    /\ ack = [c \in Conns |-> None] /\ sent = [c \in Conns |-> 0]
    /\ ackHigh = [c \in Conns |-> None]
    /\ phase = [c \in Conns |-> "Free"]
    /\ task = [c \in Conns |-> [t \in Tasks |-> "Idle"]]
    /\ stop = [c \in Conns |-> FALSE]
    /\ peer = [c \in Conns |-> "None"]
    /\ cur = NoConn /\ acceptLoop = "Running"
    /\ slot = [c \in Conns |-> "No"]
    /\ cancelled = FALSE /\ sd = "Serving" /\ closing = {}

\* Removing rows (HaRegistry::deregister, idempotent; close_all). The row's ack goes with it.
\* In our order a row is never added back and its connection's tasks have been told to stop
\* (the removal raised the signal), so the link's fields no longer matter to any invariant: they
\* are reset with the row to keep TLC's state space small (see Report for what a report does
\* after that). Upstream's connection keeps its fields (addConnection may come after the reports).
RemoveRows(S) ==
    /\ table' = table \ S
    /\ IF UpstreamOrder
         THEN UNCHANGED <<ack, sent, ackHigh>>
         ELSE /\ ack' = [c \in Conns |-> IF c \in S THEN None ELSE ack[c]]
              /\ sent' = [c \in Conns |-> IF c \in S THEN 0 ELSE sent[c]]
              /\ ackHigh' = [c \in Conns |-> IF c \in S THEN None ELSE ackHigh[c]]

\* HaRegistry::deregister(c): raises the row's stop signal and removes the row, in one critical
\* section of the table; a no-op if the row is gone (whoever removed it raised the signal).
\* RemoveWithoutStop: removes the row only. (A task's end, EndTask, spells it out with Reap.)
Deregister(c) ==
    /\ RemoveRows({c})
    /\ stop' = IF c \in table /\ ~RemoveWithoutStop THEN [stop EXCEPT ![c] = TRUE] ELSE stop

\* Deregister, then the drop of the HaConnection<Running> state (Drop for state::Running: stop,
\* abort both tasks): HaConnection<Running>::close, and the drop of a Running handle. The drop's
\* stop() comes right after the deregister in the same thread, with no await point; merged, so
\* the signal is raised even under RemoveWithoutStop (whose removal without stop this merge
\* hides here; the fault is caught where it is not followed by a stop: a task's end, and the
\* close of a refused Registered handle). The aborts make the tasks' StopSeen happen sooner.
CloseRunning(c) ==
    /\ RemoveRows({c})
    /\ stop' = [stop EXCEPT ![c] = TRUE]

LinkVars == <<ack, sent, ackHigh>>

-----------------------------------------------------------------------------
(* The environment: peers and the log *)

\* A peer connects and the accept loop's `listener.accept()` returns it (net/ha.rs accept_loop,
\* which hands it to HaAcceptor::accept). tokio::select! is not biased, so even after cancel
\* the loop may take more accepts.
\* Upstream: `new DefaultHAConnection(sc)` increments connectionCount in its constructor.
Accept(c) ==
    /\ acceptLoop = "Running" /\ cur = NoConn /\ phase[c] = "Free"
    /\ IF c = 1 THEN TRUE ELSE phase[c - 1] /= "Free"    \* accept order = id order
    /\ phase' = [phase EXCEPT ![c] = "Init"]
    /\ peer' = [peer EXCEPT ![c] = "Open"]
    /\ cur' = c
    /\ counter' = IF UpstreamOrder THEN counter + 1 ELSE counter
    /\ UNCHANGED <<table, closed, maxOffset, LinkVars, task, stop, acceptLoop, slot,
                   cancelled, sd, closing>>

\* HaMaster::append: the log grows.
Append ==
    /\ maxOffset < MaxOffset
    /\ maxOffset' = maxOffset + 1
    /\ UNCHANGED <<table, closed, counter, LinkVars, phase, task, stop, peer,
                   cur, acceptLoop, slot, cancelled, sd, closing>>

-----------------------------------------------------------------------------
(* HaAcceptor::accept: Register -> Begin -> SpawnReader -> SpawnWriter -> OpenGate -> Store, *)
(* one connection at a time (the accept loop calls it, synchronously, between its selects).  *)

\* HaConnection<Init>::register -> HaRegistry::register (one table critical section); the row
\* holds the connection's StopSignal. Refused after close_all: HaRegisterFailed hands the
\* connection back and HaAcceptor::accept closes it (HaConnection<Init>::close,
\* CloseReason::Rejected); the socket is dropped.
\* (net/ha.rs creates the MasterLink just before: ack None, next = the log's min offset, 0 here.)
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
                   THEN /\ phase' = [phase EXCEPT ![c] = "Refused"]
                        /\ peer' = [peer EXCEPT ![c] = "Closed"]
                        /\ cur' = NoConn
                        /\ UNCHANGED table
                   ELSE /\ table' = table \cup {c}
                        /\ phase' = [phase EXCEPT ![c] = "Registered"]
                        /\ UNCHANGED <<cur, peer>>
    /\ UNCHANGED <<closed, counter, maxOffset, LinkVars, task, stop, acceptLoop, slot,
                   cancelled, sd, closing>>

\* HaAcceptor::start -> Slots::begin(id): under the slots' lock, open the connection's slot
\* (None), unless shutdown began (Slots.shut_down): then HaAcceptor::start closes the Registered
\* handle (HaConnection<Registered>::close -> Registration::close -> HaRegistry::deregister;
\* the socket is dropped) and returns ShuttingDown.
\* The refusal and the close are merged: the refusal changes nothing shared and shut_down never
\* goes back, so it can be moved forward to the close, a table critical section. No Running
\* state is dropped here: under RemoveWithoutStop nothing raises this connection's signal.
Begin(c) ==
    /\ ~UpstreamOrder
    /\ cur = c /\ phase[c] = "Registered"
    /\ IF ShutDown
         THEN /\ Deregister(c)
              /\ phase' = [phase EXCEPT ![c] = "Closed"]
              /\ peer' = [peer EXCEPT ![c] = "Closed"]
              /\ cur' = NoConn
              /\ UNCHANGED slot
         ELSE /\ slot' = [slot EXCEPT ![c] = "Open"]
              /\ phase' = [phase EXCEPT ![c] = "Starting"]
              /\ UNCHANGED <<table, LinkVars, stop, peer, cur>>
    /\ UNCHANGED <<closed, counter, maxOffset, task, acceptLoop, cancelled, sd, closing>>

\* HaConnection<Registered>::spawn, first spawn: `start` builds both futures (each wrapped by
\* `reaped`, which holds the connection's Reaper), `mark_started` (a table critical section that
\* only housekeeping reads, not modelled), then `spawner.spawn(gated(go, .., reader))`. The task
\* exists but waits at its Gate until `go` opens.
\* Upstream order: `conn.start()` straight from the constructor, before any add; its threads
\* run at once (no gate): the reader thread, then (SpawnWriter) the writer thread.
SpawnReader(c) ==
    /\ cur = c
    /\ phase[c] = IF UpstreamOrder THEN "Init" ELSE "Starting"
    /\ phase' = [phase EXCEPT ![c] = "Spawning"]
    /\ task' = [task EXCEPT ![c]["reader"] = IF UpstreamOrder THEN "Running" ELSE "Gated"]
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, stop, peer,
                   cur, acceptLoop, slot, cancelled, sd, closing>>

\* spawn, second spawn: `spawner.spawn(gated(go, .., writer))`. The window between the two spawns
\* is the state "Spawning": the reader task exists, the writer does not.
SpawnWriter(c) ==
    /\ cur = c /\ phase[c] = "Spawning"
    /\ phase' = [phase EXCEPT ![c] = IF UpstreamOrder THEN "Running" ELSE "Spawned"]
    /\ task' = [task EXCEPT ![c]["writer"] = IF UpstreamOrder THEN "Running" ELSE "Gated"]
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, stop, peer,
                   cur, acceptLoop, slot, cancelled, sd, closing>>

\* spawn's end: `armed.disarm()`, then `go.stop()` opens the gate; spawn returns the
\* HaConnection<Running>. Merged with each gated task's pass through its Gate: the Gate polls
\* the connection's stop signal first, so a task passes (Running) only if the signal is not
\* raised, and otherwise stays Gated and exits (StopSeen) without running its future. Moving a
\* task's pass forward to the opening is sound: a pass reads `go` and `stop`, and a stop raised
\* in between would only make that task exit, which the Running task still does (StopSeen),
\* possibly after more steps of its own: a superset.
OpenGate(c) ==
    /\ ~UpstreamOrder
    /\ cur = c /\ phase[c] = "Spawned"
    /\ phase' = [phase EXCEPT ![c] = "Running"]
    /\ task' = [task EXCEPT ![c] = [t \in Tasks |->
                   IF @[t] = "Gated" /\ ~stop[c] THEN "Running" ELSE @[t]]]
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, stop, peer,
                   cur, acceptLoop, slot, cancelled, sd, closing>>

\* A panic anywhere in spawn (in `start`, or in the spawner on either task, before or after it
\* started that task): unwinding drops `Armed` (raises the stop signal, aborts the tasks it
\* holds), then the Registration (HaRegistry::deregister). One step: the signal is raised first,
\* and a raised signal with the row still present is allowed by every invariant. The gated tasks
\* that exist never pass their Gate (the signal is raised) and exit; the last of them drops the
\* Reaper (Reap), or the unwinding does (with the closure or the writer's future) if no task is
\* alive. The panic propagates out of HaAcceptor::accept; the model lets the accept loop go on (a
\* caller that catches it, as tests/spawn_panics.rs does; net/ha.rs's accept-loop task would end
\* instead, which only removes behaviours: no further accepts). No fairness: a panic may or may
\* not happen.
SpawnPanics(c) ==
    /\ ~UpstreamOrder
    /\ cur = c /\ phase[c] \in {"Starting", "Spawning", "Spawned"}
    /\ phase' = [phase EXCEPT ![c] = "Panicked"]
    /\ CloseRunning(c)
    /\ IF AnyAlive(c)
         THEN UNCHANGED <<slot, peer>>
         ELSE /\ slot' = [slot EXCEPT ![c] = "No"]           \* the last holder: Reap
              /\ peer' = [peer EXCEPT ![c] = "Closed"]
    /\ cur' = NoConn
    /\ UNCHANGED <<closed, counter, maxOffset, task, acceptLoop, cancelled, sd, closing>>

\* HaAcceptor::start -> Slots::store(id, running): under the slots' lock, put the handle in its
\* open slot. If the slot is gone (its tasks already ended and the Reaper took it, or
\* Slots::drain took it), the handle is handed back and closed here: `late.close(Shutdown)`
\* (HaConnection<Running>::close: deregister, then the drop's stop and aborts). The miss and
\* the close are merged (the miss changes nothing shared, and a slot once gone never comes
\* back for this id).
Store(c) ==
    /\ ~UpstreamOrder
    /\ cur = c /\ phase[c] = "Running"
    /\ IF slot[c] = "Open"
         THEN /\ slot' = [slot EXCEPT ![c] = "Held"]
              /\ UNCHANGED <<table, LinkVars, stop, phase>>
         ELSE /\ CloseRunning(c)
              /\ phase' = [phase EXCEPT ![c] = "Closed"]
              /\ UNCHANGED slot
    /\ cur' = NoConn
    /\ UNCHANGED <<closed, counter, maxOffset, task, peer, acceptLoop, cancelled, sd,
                   closing>>

\* The accept loop's select sees the cancellation and breaks.
AcceptLoopExit ==
    /\ acceptLoop = "Running" /\ cancelled /\ cur = NoConn
    /\ acceptLoop' = "Exited"
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, phase, task, stop, peer,
                   cur, slot, cancelled, sd, closing>>

-----------------------------------------------------------------------------
(* The connection's tasks (net/ha.rs read_reports / write_transfers inside `gated`) *)

\* The connection's Reaper (and its socket halves) are held by the spawn closure, then by the two
\* task futures (`reaped`; the reader's and the writer's half of the socket likewise). When task
\* t ends, it is the last holder if the other task is done, or was never spawned and never will
\* be (spawn panicked first). While spawn is between its two spawns, it holds the writer's.
LastHolder(c, t) ==
    LET u == CHOOSE x \in Tasks : x /= t IN
    \/ task[c][u] = "Done"
    \/ task[c][u] = "Idle" /\ phase[c] = "Panicked"

\* Reaper::drop, when its last holder goes: Slots::take removes the connection's slot (it is
\* gone already if Slots::drain took it) and drops the handle if one was stored (Drop for
\* state::Running: stop, abort; its Registration then deregisters: no-ops here, as the ending
\* task's own deregister did both; under RemoveWithoutStop this stop is the one that counts).
\* One-shot, as in the Rust: a slot gone before Store is never taken again, so Store must close
\* the handle it gets back. Part of the step that drops the last holder (EndTask, SpawnPanics).
Reap(c) ==
    /\ slot' = [slot EXCEPT ![c] = "No"]
    /\ phase' = IF slot[c] = "Held" THEN [phase EXCEPT ![c] = "Closed"] ELSE phase

\* A task's future returns (or unwinds, or is aborted, or its Gate refused it). `gated` drops the
\* future first, in every case, and with it the task's hold on the Reaper; if it was the last
\* holder, the Reaper's drop (Reap: Slots::take) runs then. Then `exit.close(&reason)` (or the
\* Registration's drop) -> HaRegistry::deregister raises the stop signal and removes the row in
\* one critical section (a no-op if another path removed it), and the task is gone (the
\* TaskGauge is decremented); no await point in between. One step: the last holder's deregister
\* is a no-op (the first task's end removed the row, or a close did), so between the Reap and it
\* nothing can tell the two apart; a task that is not the last holder has only its deregister.
\* (A refused gate used to remove the row before dropping the future: a Store or a Drain could
\* then still find the slot of a connection whose tasks had all ended, which this step cannot
\* produce. Trace validation found it; the code was changed.) When the last holder goes, both
\* socket halves are gone, so the peer sees the close (or had closed: eof).
\* Upstream: state = SHUTDOWN, makeStop() on itself and on the other thread, removeConnection
\* (merged; only the reader decrements connectionCount); no Reaper, no slots.
EndTask(c, t, eof) ==
    /\ task' = [task EXCEPT ![c][t] = "Done"]
    /\ IF UpstreamOrder
         THEN /\ RemoveRows({c})
              /\ stop' = [stop EXCEPT ![c] = TRUE]
              /\ UNCHANGED <<slot, phase>>
         ELSE /\ RemoveRows({c})
              /\ stop' = IF \/ c \in table /\ ~RemoveWithoutStop       \* Deregister(c)
                            \/ LastHolder(c, t) /\ slot[c] = "Held"      \* Reap's drop
                           THEN [stop EXCEPT ![c] = TRUE] ELSE stop
              /\ IF LastHolder(c, t) THEN Reap(c) ELSE UNCHANGED <<slot, phase>>
    /\ counter' = IF UpstreamOrder /\ t = "reader" THEN counter - 1 ELSE counter
    /\ peer' = IF eof \/ LastHolder(c, t) THEN [peer EXCEPT ![c] = "Closed"] ELSE peer

\* Everything but the task's own variables (task, stop, peer, table, counter, the link) and what
\* its end may reap (slot, phase).
TaskUnchanged == UNCHANGED <<closed, maxOffset, cur, acceptLoop, cancelled, sd, closing>>

\* The peer closes (a slave going away, or a health check that connects and closes at once)
\* and the reader's read returns Ok(0): CloseReason::PeerClosed.
\* Merged into one step, and only while the reader runs. This is a reduction, sound for every
\* property checked here: the close only matters to the reader (it ends it, and stops reports
\* and idle timeouts on that socket), no invariant reads `peer`, and every other step commutes
\* with it. So a close that comes earlier (right after Accept, before Register or the spawns,
\* or while the reader is busy) is the same behaviour with the close moved to the moment the
\* reader sees EOF, and a close after the reader ended changes nothing before the last task's
\* end drops the socket anyway. The probe that connects and closes at once is therefore
\* Accept, then this step as soon as the reader runs (upstream: before addConnection).
PeerClose(c) ==
    /\ task[c]["reader"] = "Running" /\ peer[c] = "Open"
    /\ EndTask(c, "reader", TRUE)
    /\ TaskUnchanged

\* The reader decodes an 8-byte report o: MasterLink::handle_bytes -> check_report, then
\* HaTaskContext::apply_link_events records a valid one with HaRegistry::record_ack, all under
\* the link's lock: one step. check_report accepts o only if
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
              /\ UNCHANGED <<task, stop, peer, table, counter, slot, phase>>
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
                   cur, acceptLoop, slot, cancelled, sd, closing>>

\* MasterLink's housekeeping: nothing valid read for housekeeping_ms. Either task may be the
\* one that drains the Closed(Idle) event (both call handle_timeout). CloseReason::IdleTimeout.
IdleTimeout(c, t) ==
    /\ task[c][t] = "Running" /\ peer[c] = "Open"
    /\ EndTask(c, t, FALSE)
    /\ TaskUnchanged

\* An IO error (a write to a reset socket, a log read error: the task returns), or a panic
\* (the future unwinds; the task's Registration is dropped, which deregisters).
TaskFail(c, t) ==
    /\ task[c][t] = "Running"
    /\ EndTask(c, t, FALSE)
    /\ TaskUnchanged

\* The task sees its stop signal: the `ctx.stopped()` arms of read_reports / write_transfers
\* (CloseReason::Shutdown), a Gate that finds the signal raised (`exit.close(Shutdown)`, the
\* future never runs), or an abort at an await point (the future is dropped, and the
\* Registration's drop deregisters). Every abort in the Rust comes after the signal was raised
\* (Drop for state::Running, Armed::drop).
StopSeen(c, t) ==
    /\ Alive(c, t) /\ stop[c]
    /\ EndTask(c, t, FALSE)
    /\ TaskUnchanged

-----------------------------------------------------------------------------
(* HaMaster::shutdown: cancel; HaAcceptor::shutdown (Slots::drain, close each taken handle, *)
(* close_all); wait; return.                                                               *)

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
    /\ UNCHANGED <<counter, maxOffset, phase, task, peer, cur, acceptLoop, slot, closing>>

\* HaAcceptor::shutdown -> Slots::drain: in one critical section of the slots, set shut_down
\* (no slot opens from now on: Begin refuses) and take every slot; the stored handles are to be
\* closed, the open ones (None: their accept is still starting them) are left to that accept,
\* whose Store now misses and closes its handle.
Drain ==
    /\ ~UpstreamOrder
    /\ sd = "Cancelled"
    /\ closing' = {c \in Conns : slot[c] = "Held"}
    /\ slot' = [c \in Conns |-> "No"]
    /\ sd' = "Drained"
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, phase, task, stop, peer,
                   cur, acceptLoop, cancelled>>

\* HaAcceptor::shutdown's `for connection in open { connection.close(Shutdown) }`, one handle
\* at a time (the model takes them in any order): HaConnection<Running>::close, deregister (stop
\* first) then the drop's stop and aborts (CloseRunning).
CloseConnection(c) ==
    /\ sd = "Drained" /\ c \in closing
    /\ closing' = closing \ {c}
    /\ CloseRunning(c)
    /\ phase' = [phase EXCEPT ![c] = "Closed"]
    /\ UNCHANGED <<closed, counter, maxOffset, task, peer, cur, acceptLoop, slot, cancelled,
                   sd>>

\* HaAcceptor::shutdown, last: HaRegistry::close_all. In one critical section of the table: set
\* `closed` (register refuses from now on), raise every row's stop signal and remove every row.
\* It catches the connection an accept registered before it and has not stored yet (and a
\* Registered handle leaked by its owner). Raised even under RemoveWithoutStop, as in the Rust.
CloseAll ==
    /\ ~UpstreamOrder
    /\ sd = "Drained" /\ closing = {}
    /\ closed' = TRUE
    /\ RemoveRows(table)
    /\ stop' = [c \in Conns |-> stop[c] \/ c \in table]
    /\ sd' = "ClosedAll"
    /\ UNCHANGED <<counter, maxOffset, phase, task, peer, cur, acceptLoop, slot, cancelled,
                   closing>>

\* The grace wait ends (all tasks gone, or the deadline) and shutdown returns.
ShutdownReturn ==
    /\ sd = "ClosedAll"
    /\ sd' = "Returned"
    /\ UNCHANGED <<table, closed, counter, maxOffset, LinkVars, phase, task, stop, peer,
                   cur, acceptLoop, slot, cancelled, closing>>

-----------------------------------------------------------------------------

\* Everything has stopped: allowed to stutter, so that TLC's deadlock check flags any other
\* state with no successor (a lifecycle stuck half-way).
Terminated ==
    /\ acceptLoop = "Exited" /\ sd = "Returned" /\ cur = NoConn
    /\ \A c \in Conns : ~AnyAlive(c) /\ peer[c] /= "Open" /\ slot[c] = "No"

\* The steps the server takes by itself (given weak fairness below).
Server ==
    \/ \E c \in Conns : \/ Register(c) \/ Begin(c) \/ SpawnReader(c) \/ SpawnWriter(c)
                        \/ OpenGate(c) \/ Store(c) \/ Transfer(c) \/ CloseConnection(c)
                        \/ \E t \in Tasks : StopSeen(c, t)
    \/ AcceptLoopExit \/ Drain \/ CloseAll \/ ShutdownReturn

\* What peers, faults and the operator may do (no fairness).
Environment ==
    \/ Append \/ Cancel
    \/ \E c \in Conns :
         \/ Accept(c) \/ PeerClose(c) \/ SpawnPanics(c)
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
(* Invariants (names as in docs/SPEC.md section 4 and the Rust) *)

\* A connection's tasks run (or wait at their gate) only while its row is in the table or its
\* stop signal is raised. This is the strict wording, with no exception for shutdown: every
\* removal raises the signal first (StopBeforeRemove), close_all included.
NoRunningUnregistered ==
    \A c \in Conns, t \in Tasks : Alive(c, t) => c \in table \/ stop[c]

\* A connection whose row was added and is gone has its stop signal raised (our order; stop
\* is never lowered, so this is "the signal was raised no later than the removal"): every
\* removal (a task's end, a close, a drop, a refused slot, a panicking spawn, close_all) raises
\* it in the same critical section or before. A connection that had a row is one past
\* Init that register did not refuse.
HadRow(c) == phase[c] \notin {"Free", "Init", "Refused"}
StopBeforeRemove ==
    \A c \in Conns : HadRow(c) /\ c \notin table => stop[c]

\* Both tasks are started before either runs the connection's future, and a spawn that
\* panicked runs neither (HaConnection<Registered>::spawn's gate; tests/spawn_panics.rs).
SpawnAllOrNothing ==
    \A c \in Conns, t \in Tasks : task[c][t] = "Running" => phase[c] \in {"Running", "Closed"}

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

\* When shutdown returns, every task still alive has been told to stop.
ShutdownStopsEveryTask ==
    sd = "Returned" => \A c \in Conns : AnyAlive(c) => stop[c]

\* A state constraint (HaConnection_acks.cfg): explore only until shutdown starts. The report
\* rule is the link's own (MasterLink), switched on by the row and off by its removal; shutdown
\* only removes rows, which the tasks' own ends already do, so the log can grow in that
\* configuration without multiplying the shutdown interleavings that HaConnection.cfg covers.
BeforeShutdown == ~cancelled

-----------------------------------------------------------------------------
(* Temporal property *)

NoPeerConnected == \A c \in Conns : peer[c] /= "Open"
\* No row, no task alive, and the acceptor holds no slot.
Clean           == table = {} /\ \A c \in Conns : ~AnyAlive(c) /\ slot[c] = "No"

\* Once no peer is connected and no more accepts happen (a new accept opens a peer), the
\* table eventually becomes empty and stays empty, no task is alive and the acceptor holds
\* nothing.
NoLeakAtQuiescence == (<>[]NoPeerConnected) => <>[]Clean

=============================================================================
