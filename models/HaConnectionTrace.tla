------------------------- MODULE HaConnectionTrace -------------------------
(***************************************************************************)
(* Trace validation of HaConnection: is a trace the Rust recorded (the     *)
(* lifecycle events of the HA acceptor, its connections and HaRegistry,   *)
(* in the order they took effect) a behaviour of the model? See           *)
(* models/README.md, "Trace validation of the HA lifecycle".              *)
(*                                                                         *)
(* HaConnection is EXTENDed unchanged. A behaviour of this spec is one of *)
(* HaConnection (each step one of its actions, or a stutter that only     *)
(* checks) paired with a position in the trace:                           *)
(*   - each event is its model action, enabled, with the event's          *)
(*     parameters; an event that the model merges into another action's  *)
(*     step (a refused Begin, a missed Store: the close that follows      *)
(*     them is the step; a Reap: part of the last task's end) only        *)
(*     checks the state;                                                   *)
(*   - between events, only what the code does not record: a peer's      *)
(*     Accept just before its connection's first event, the log's Append  *)
(*     and a writer's Transfer just before a report that needs them, and  *)
(*     the shutdown's Cancel just before its Drain.                       *)
(* A trace is accepted iff some behaviour matches all of it and ends      *)
(* Complete: no accept half-way, no row, no task, no slot, and every slot *)
(* opened was reaped by a Reap event. models/trace/validate.py (--model   *)
(* ha) writes the module that binds Traces and reads the verdict off     *)
(* Progress.                                                              *)
(*                                                                         *)
(* validate.py numbers each trace's connections 1, 2, ... in the order    *)
(* of their first events (the accept order: one accept at a time), ranks  *)
(* the offsets of its reports 0, 1, ... (the model compares offsets, it   *)
(* adds none), and moves the task ends that follow a connection's Reap    *)
(* to just before it (a Reap runs once both task futures are gone; the    *)
(* ends it precedes only deregister rows already gone or about to be).    *)
(***************************************************************************)
EXTENDS HaConnection, Sequences, TLC

CONSTANT Traces   \* <<trace_1, ..., trace_N>>: each a sequence of event records (below)

(* Event records (c: a connection 1..N; booleans where the JSON has them):                  *)
(*   [action |-> "Register", c]              [action |-> "RegisterRefused", c, closed]       *)
(*   [action |-> "Begin", c, open]           [action |-> "SpawnReader" | "SpawnWriter" |    *)
(*   [action |-> "Store", c, held]                       "OpenGate", c]                     *)
(*   [action |-> "Ack", c, o]  (o ranked)    [action |-> "Reap", c, found, held]             *)
(*   [action |-> "End", c, t, why, removed, stopped]   (t: "reader" | "writer"; why: below)  *)
(*   [action |-> "Close", c, removed, stopped]         [action |-> "Reclaim", c]             *)
(*   [action |-> "Drain", taken]  (taken: a set)       [action |-> "CloseAll"]               *)

VARIABLES
    t,      \* which trace
    i,      \* the next event of Traces[t] to match
    begun,  \* the connections whose slot a Begin event opened
    reaps   \* the connections a Reap event reaped

traceVars == <<t, i, begun, reaps>>
allVars   == <<vars, traceVars>>

\* Evaluated once (a CONSTANT bound with `<-` would be evaluated at every use).
TheTraces == Traces

Tr == TheTraces[t]

-----------------------------------------------------------------------------
(* One event, one model action *)

\* How task tk of c ended (CloseReason in the code), as the model's way for a task to end. A
\* dropped task (aborted, or its future panicked) is StopSeen if its stop was raised (every
\* abort in the code comes after the signal), a TaskFail otherwise.
EndBy(c, tk, why) ==
    \/ why = "PeerClosed" /\ tk = "reader" /\ PeerClose(c)
    \/ why = "Protocol"   /\ tk = "reader" /\ Report(c, MaxOffset + 1)
    \/ why = "Idle"       /\ IdleTimeout(c, tk)
    \/ why = "Fail"       /\ TaskFail(c, tk)
    \/ why = "Stop"       /\ StopSeen(c, tk)
    \/ why = "Dropped"    /\ (StopSeen(c, tk) \/ TaskFail(c, tk))

\* A handle's close (its registration's removal). Which step it is follows from where the
\* connection is: shutdown closing a handle it took; the close of a handle whose Store missed
\* (Store's miss branch); the close of a Registered handle whose Begin was refused (Begin's
\* refused branch); or a no-op (the reaper dropping a stored handle, after the last task's end).
CloseBy(c) ==
    \/ sd = "Drained" /\ c \in closing /\ CloseConnection(c)
    \/ cur = c /\ phase[c] = "Running" /\ slot[c] /= "Open" /\ Store(c)
    \/ cur = c /\ phase[c] = "Registered" /\ ShutDown /\ Begin(c)
    \/ phase[c] = "Closed" /\ c \notin table /\ UNCHANGED vars

\* A removal the code made says whether the row's stop signal was raised when it went: the
\* model raises it with every removal (StopBeforeRemove).
\* Under RemoveWithoutStop the check is off: the code then raises the signal only on other
\* paths (the reaper's drop of a stored handle, a close), which the model merges into other
\* steps, so where it goes up relative to a removal is no longer the model's to say.
StopChecked(e) == e.removed /\ ~RemoveWithoutStop => stop'[e.c] = e.stopped

Step(e) ==
    \/ e.action = "Register"        /\ Register(e.c) /\ phase'[e.c] = "Registered"
    \/ e.action = "RegisterRefused" /\ Register(e.c) /\ phase'[e.c] = "Refused"
    \/ e.action = "Begin"           /\ e.open /\ Begin(e.c) /\ slot'[e.c] = "Open"
    \/ e.action = "Begin"           /\ ~e.open /\ cur = e.c /\ phase[e.c] = "Registered"
                                    /\ ShutDown /\ UNCHANGED vars
    \/ e.action = "SpawnReader"     /\ SpawnReader(e.c)
    \/ e.action = "SpawnWriter"     /\ SpawnWriter(e.c)
    \/ e.action = "OpenGate"        /\ OpenGate(e.c)
    \/ e.action = "Store"           /\ e.held /\ Store(e.c) /\ slot'[e.c] = "Held"
    \/ e.action = "Store"           /\ ~e.held /\ cur = e.c /\ phase[e.c] = "Running"
                                    /\ slot[e.c] /= "Open" /\ UNCHANGED vars
    \/ e.action = "Ack"             /\ Report(e.c, e.o) /\ ack'[e.c] = e.o
    \/ e.action = "End"             /\ EndBy(e.c, e.t, e.why) /\ StopChecked(e)
    \/ e.action = "Close"           /\ CloseBy(e.c) /\ StopChecked(e)
    \/ e.action = "Reap"            /\ e.c \notin reaps /\ slot[e.c] = "No" /\ ~AnyAlive(e.c)
                                    /\ (e.held => phase[e.c] = "Closed") /\ UNCHANGED vars
    \/ e.action = "Drain"           /\ Drain /\ closing' = e.taken
    \/ e.action = "CloseAll"        /\ CloseAll
    \* Reclaim (housekeeping of a row whose tasks never started) is no action of the model.

Event ==
    /\ i <= Len(Tr)
    /\ Step(Tr[i])
    /\ i' = i + 1
    /\ begun' = IF Tr[i].action = "Begin" /\ Tr[i].open THEN begun \cup {Tr[i].c} ELSE begun
    /\ reaps' = IF Tr[i].action = "Reap" THEN reaps \cup {Tr[i].c} ELSE reaps
    /\ UNCHANGED t

-----------------------------------------------------------------------------
(* The model's steps the code does not record *)

HasConn(e) == "c" \in DOMAIN e

\* A peer connects: just before its connection's first event (validate.py numbers connections
\* in that order, which is the accept order).
AcceptFor ==
    /\ i <= Len(Tr) /\ HasConn(Tr[i]) /\ phase[Tr[i].c] = "Free"
    /\ Accept(Tr[i].c)
    /\ UNCHANGED traceVars

\* The log grows, and the writer hands out bytes, just before a report that needs them. A
\* transfer hands out exactly up to the report (any amount is the model's choice).
AppendFor ==
    /\ i <= Len(Tr) /\ Tr[i].action = "Ack" /\ maxOffset < Tr[i].o
    /\ Append
    /\ UNCHANGED traceVars

TransferFor ==
    /\ i <= Len(Tr) /\ Tr[i].action = "Ack"
    /\ LET c == Tr[i].c IN
         /\ ack[c] /= None /\ sent[c] < Tr[i].o
         /\ Transfer(c) /\ sent'[c] = Tr[i].o
    /\ UNCHANGED traceVars

\* HaMaster::shutdown cancels the accept loop before HaAcceptor::shutdown drains the slots.
CancelFor ==
    /\ i <= Len(Tr) /\ Tr[i].action = "Drain" /\ sd = "Serving"
    /\ Cancel
    /\ UNCHANGED traceVars

-----------------------------------------------------------------------------

TraceInit == Init /\ t \in 1..Len(TheTraces) /\ i = 1 /\ begun = {} /\ reaps = {}

TraceNext == Event \/ AcceptFor \/ AppendFor \/ TransferFor \/ CancelFor

TraceSpec == TraceInit /\ [][TraceNext]_allVars

-----------------------------------------------------------------------------
(* Verdicts *)

\* Every event matched, no accept half-way, no row, no task alive, no slot held, and every slot
\* opened was reaped (each Reaper drops once; a lost reap leaves the acceptor a shell).
Complete ==
    /\ i > Len(Tr) /\ cur = NoConn /\ table = {}
    /\ \A c \in Conns : ~AnyAlive(c) /\ slot[c] = "No"
    /\ begun = reaps

TraceNotDone     == i <= Len(Tr)
TraceNotComplete == ~Complete

\* How far into trace t a state is: i (events 1..i-1 matched), Len + 2 once complete.
Reached == IF Complete THEN Len(Tr) + 2 ELSE i

\* Always TRUE; prints <<"progress", t, Reached>> whenever a state gets further into trace t
\* than any before (TLC register t holds the furthest; -workers 1). See ClientRegistryTrace.
ASSUME \A k \in 1..Len(Traces) : TLCSet(k, 0)
Progress ==
    IF Reached > TLCGet(t) THEN PrintT(<<"progress", t, Reached>>) /\ TLCSet(t, Reached)
                           ELSE TRUE

=============================================================================
