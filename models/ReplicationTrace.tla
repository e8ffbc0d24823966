-------------------------- MODULE ReplicationTrace --------------------------
(***************************************************************************)
(* Trace validation of Replication: is a trace the Rust recorded (the     *)
(* replication events of every replica of one group, in the order they    *)
(* took effect) a behaviour of the model? See models/README.md, "Trace    *)
(* validation of replication".                                            *)
(*                                                                         *)
(* Replication is EXTENDed unchanged. A behaviour of this spec is one of  *)
(* Replication (each step one of its actions, or a stutter that only      *)
(* checks) paired with a position in the trace:                           *)
(*   - each event is its model action, enabled, with the event's          *)
(*     parameters; an Append or a Transfer (one record or frame, of       *)
(*     several model entries) is as many AppendEntry or Transfer steps in *)
(*     a row, the event consumed with the last; an Epoch, a first Open,   *)
(*     a partial Sync and a Report that changes nothing only check;      *)
(*   - between events, only what the code does not record, just before   *)
(*     the event that needs it: a slave's Connect and the first half of  *)
(*     its truncation before its Truncate event (the second half); the   *)
(*     master's Flush before a Demote (a clean stop syncs); the in-sync   *)
(*     bookkeeping (ShrinkIsr, Publish, and an Ack that only adds a       *)
(*     member, its ack unchanged) before a Crash, a Demote or a Confirm.  *)
(* A trace is accepted iff some behaviour matches all of it: a            *)
(* simulation ends wherever the run stopped, so there is no required end  *)
(* state (Complete is "every event matched"). models/trace/validate.py    *)
(* (--model replication) writes the module that binds Traces and reads    *)
(* the verdict off Progress.                                              *)
(*                                                                         *)
(* validate.py ranks every distinct byte offset of a trace 0, 1, 2, ...   *)
(* (the model's entry k is the bytes between ranks k - 1 and k: records   *)
(* have sizes, a slave may stop mid-record) and the epochs its            *)
(* BeginEpoch events hand out 1, 2, ... (an epoch no BeginEpoch handed    *)
(* out is 0, which no model epoch equals).                                *)
(***************************************************************************)
EXTENDS Replication, Sequences, TLC

CONSTANT Traces   \* <<trace_1, ..., trace_N>>: each a sequence of event records (below)

(* Event records (r: a replica name; offsets ranked; ep: an epoch ranked; first: a boolean): *)
(*   [action |-> "Open", r, max, es]  (es: <<<<ep, start>>, ...>>)   [action |-> "Crash", r]  *)
(*   [action |-> "BeginEpoch" | "Epoch", r, ep, start]                [action |-> "Demote", r] *)
(*   [action |-> "Append" | "Transfer", r, from, to]  [action |-> "Truncate", r, point]      *)
(*   [action |-> "Report", r, o, first]  [action |-> "Sync", r, to]  [action |-> "Confirm", r, o] *)

VARIABLES
    t,       \* which trace
    i,       \* the next event of Traces[t] to match
    mid,     \* TRUE while an Append or Transfer event has taken some of its steps, not all
    pend,    \* [Replicas -> 0 .. 1 + MaxElections]: the epoch of the Epoch event a slave
             \*   recorded whose Transfer has not come yet (0: none)
    opened,  \* the replicas whose first Open event has matched
    begun    \* whether the first BeginEpoch event (the model's Init) has matched

traceVars == <<t, i, mid, pend, opened, begun>>
allVars   == <<vars, traceVars>>

\* Evaluated once (a CONSTANT bound with `<-` would be evaluated at every use).
TheTraces == Traces

Tr == TheTraces[t]

\* The replica of trace k's first BeginEpoch: the model's r0 (Init's first master).
FirstMaster(k) ==
    LET B == {j \in 1 .. Len(TheTraces[k]) : TheTraces[k][j].action = "BeginEpoch"}
    IN  IF B = {} THEN CHOOSE r \in Replicas : TRUE ELSE TheTraces[k][MinOf(B)].r

-----------------------------------------------------------------------------
(* One event, one model action *)

\* The slave's half of the handshake that comes first and the half that comes second:
\* AutoSwitchHAClient.doTruncate cuts the commit log, then the epoch file (the reverse with
\* EpochsFirst). The code records one Truncate event for both; the first half is taken,
\* unrecorded, just before it (TruncateFor), and the event is the second.
FirstHalf(s)  == IF EpochsFirst THEN TruncateEpochs(s) ELSE TruncateLog(s)
SecondHalf(s) == IF EpochsFirst THEN TruncateLog(s) ELSE TruncateEpochs(s)

\* Slave s recorded the master's epoch entry <<e, st>>, just before the bytes of epoch e: the
\* entry the slave needs next is of epoch e (the model's Transfer then appends <<e, StartOf>>
\* with it, which it does only when e is not the slave's last epoch) and e starts at st in the
\* master's epoch file.
EpochChecked(s, e, st) ==
    /\ HasMaster /\ role[s] = "slave" /\ conn[s] = "transfer"
    /\ LET m == TheMaster
           k == Len(log[s]) + 1
       IN  /\ k <= Len(log[m])
           /\ log[m][k] = e
           /\ LastEpoch(epochs[s]) /= e
           /\ StartOf(epochs[m], e) = st

\* A report after the first: the master reads it (Ack), or, if that changes nothing (the same
\* ack, no member to add: Ack is not enabled), a check that the master counts it.
LaterReport(s) ==
    \/ Ack(s)
    \/ /\ HasMaster /\ role[s] = "slave" /\ Counted(s) /\ ~ENABLED Ack(s)
       /\ UNCHANGED vars

Step(ev) ==
    LET r == ev.r IN
    \* the first start of r's log: empty (the model's logs start empty)
    \/ ev.action = "Open"       /\ r \notin opened /\ ev.max = 0 /\ ev.es = <<>>
                                /\ UNCHANGED vars
    \* a restart: recovery kept exactly the synced prefix and its epoch entries
    \/ ev.action = "Open"       /\ r \in opened /\ Restart(r)
                                /\ Len(log[r]) = ev.max /\ epochs[r] = ev.es
    \* a reopen of a live replica's store (a clean stop and start, as when a slave's store is
    \* reopened for its master role): nothing changes, recovery kept everything
    \/ ev.action = "Open"       /\ r \in opened /\ role[r] /= "down"
                                /\ Len(log[r]) = ev.max /\ epochs[r] = ev.es
                                /\ UNCHANGED vars
    \/ ev.action = "Crash"      /\ Crash(r)
    \* the first: the model's Init, with r as r0 (TraceInit)
    \/ ev.action = "BeginEpoch" /\ ~begun /\ role[r] = "master" /\ epoch = ev.ep
                                /\ ev.start = 0 /\ UNCHANGED vars
    \/ ev.action = "BeginEpoch" /\ begun /\ Elect(r) /\ epoch' = ev.ep
                                /\ Len(log[r]) = ev.start
    \/ ev.action = "Truncate"   /\ cut[r] = ev.point /\ SecondHalf(r)
    \/ ev.action = "Report"     /\ ev.first /\ Len(log[r]) = ev.o /\ ReportOffset(r)
    \/ ev.action = "Report"     /\ ~ev.first /\ Len(log[r]) = ev.o /\ LaterReport(r)
    \* a report on a connection the model has already dropped (its master crashed or was
    \* demoted; the slave has not noticed yet): nobody reads it
    \/ ev.action = "Report"     /\ ~ev.first /\ Len(log[r]) = ev.o /\ role[r] = "slave"
                                /\ conn[r] = "none" /\ UNCHANGED vars
    \/ ev.action = "Epoch"      /\ pend[r] = 0 /\ EpochChecked(r, ev.ep, ev.start)
                                /\ UNCHANGED vars
    \/ ev.action = "Sync"       /\ ev.to = Len(log[r]) /\ Flush(r)
    \* a sync with nothing new to sync, or a partial one (the model's Flush syncs the whole
    \* log): a check only, the model's synced offset stays where it is
    \/ ev.action = "Sync"       /\ role[r] /= "down" /\ ev.to <= Len(log[r])
                                /\ (ev.to < Len(log[r]) \/ synced[r] = Len(log[r]))
                                /\ UNCHANGED vars
    \/ ev.action = "Demote"     /\ synced[r] = Len(log[r]) /\ Demote(r)
    \* wait_for_replication(o) returned: the confirm offset reached o. The model's Confirm
    \* raises it to the lowest counted ack, which may be past o; or it is there already.
    \/ ev.action = "Confirm"    /\ Confirm(r) /\ confirmed' >= ev.o
    \/ ev.action = "Confirm"    /\ role[r] = "master" /\ confirmed >= ev.o /\ UNCHANGED vars

\* Every event but Append and Transfer (Grow). An event of a replica comes after its first
\* Open; every event but Open comes after the first BeginEpoch; between a slave's Epoch event
\* and its Transfer nothing of that slave happens (the frame's epoch entry and its bytes are
\* written together in the model).
Event ==
    /\ i <= Len(Tr)
    /\ LET ev == Tr[i] IN
         /\ ev.action \notin {"Append", "Transfer"}
         /\ ev.action = "Open" \/ ev.r \in opened
         /\ ev.action \in {"Open", "BeginEpoch"} \/ begun
         /\ pend[ev.r] = 0
         /\ Step(ev)
         /\ opened' = opened \cup {ev.r}
         /\ begun' = (begun \/ ev.action = "BeginEpoch")
         /\ pend' = IF ev.action = "Epoch" THEN [pend EXCEPT ![ev.r] = ev.ep] ELSE pend
    /\ i' = i + 1
    /\ UNCHANGED <<t, mid>>

\* One model step of the Append (AppendEntry) or Transfer event Tr[i]: the first starts at the
\* event's `from`; the last reaches its `to` and consumes the event. A Transfer step that
\* appends an epoch entry must be the first of an event that an Epoch event of that epoch
\* announced; any other may not append one (a frame never crosses an epoch's end).
Grow ==
    /\ i <= Len(Tr) /\ Tr[i].action \in {"Append", "Transfer"} /\ begun
    /\ LET ev == Tr[i]
           r  == ev.r
       IN  /\ r \in opened
           /\ mid \/ Len(log[r]) = ev.from
           /\ IF ev.action = "Append"
                THEN AppendEntry(r) /\ pend[r] = 0 /\ UNCHANGED pend
                ELSE /\ Transfer(r)
                     /\ IF epochs'[r] = epochs[r]
                          THEN pend[r] = 0 /\ UNCHANGED pend
                          ELSE /\ pend[r] = LastEpoch(epochs'[r])
                               /\ pend' = [pend EXCEPT ![r] = 0]
           /\ IF Len(log'[r]) = ev.to THEN i' = i + 1 /\ mid' = FALSE
                                      ELSE i' = i /\ mid' = TRUE
    /\ UNCHANGED <<t, opened, begun>>

-----------------------------------------------------------------------------
(* The model's steps the code does not record *)

\* A slave that reconnects (a Truncate while the model has it connected): its connection
\* dropped just before (the code records no drop: the slave's next handshake shows it).
DisconnectFor ==
    /\ i <= Len(Tr) /\ Tr[i].action = "Truncate" /\ begun /\ Tr[i].r \in opened
    /\ pend[Tr[i].r] = 0 /\ conn[Tr[i].r] /= "none" /\ cut[Tr[i].r] = NoCut
    /\ Disconnect(Tr[i].r)
    /\ UNCHANGED traceVars

\* A slave's connection to the master and the first half of its handshake's truncation, just
\* before its Truncate event; the first half's point must be the event's.
ConnectFor ==
    /\ i <= Len(Tr) /\ Tr[i].action = "Truncate" /\ begun /\ Tr[i].r \in opened
    /\ pend[Tr[i].r] = 0
    /\ Connect(Tr[i].r)
    /\ UNCHANGED traceVars

TruncateFor ==
    /\ i <= Len(Tr) /\ Tr[i].action = "Truncate"
    /\ FirstHalf(Tr[i].r) /\ cut'[Tr[i].r] = Tr[i].point
    /\ UNCHANGED traceVars

\* A demotion is a clean stop: the master's bytes are synced first.
FlushFor ==
    /\ i <= Len(Tr) /\ Tr[i].action = "Demote"
    /\ Flush(Tr[i].r)
    /\ UNCHANGED traceVars

\* The in-sync set's bookkeeping, which the code does not record (the Rust has no controller):
\* the master drops a lagging slave, publishes its set to the controller, or adds a slave on
\* its last report (an Ack that changes no ack). Only just before what depends on the sets: a
\* crash (after which an election reads the controller's set), a demotion, a confirm.
IsrFor ==
    /\ i <= Len(Tr) /\ Tr[i].action \in {"Crash", "Demote", "Confirm"} /\ begun
    /\ \E s \in Replicas : ShrinkIsr(s) \/ Publish(s) \/ (Ack(s) /\ ack'[s] = ack[s])
    /\ UNCHANGED traceVars

-----------------------------------------------------------------------------

TraceInit ==
    /\ t \in 1 .. Len(TheTraces)
    /\ Init
    /\ role[FirstMaster(t)] = "master"
    /\ i = 1 /\ mid = FALSE /\ pend = [r \in Replicas |-> 0] /\ opened = {} /\ begun = FALSE

TraceNext == Event \/ Grow \/ DisconnectFor \/ ConnectFor \/ TruncateFor \/ FlushFor \/ IsrFor

TraceSpec == TraceInit /\ [][TraceNext]_allVars

-----------------------------------------------------------------------------
(* Verdicts *)

\* Every event matched. (No end state is required: a run stops wherever it stops.)
Complete == i > Len(Tr)

\* How far into trace t a state is: i (events 1..i-1 matched), Len + 2 once complete.
Reached == IF Complete THEN Len(Tr) + 2 ELSE i

\* Always TRUE; prints <<"progress", t, Reached>> whenever a state gets further into trace t
\* than any before (TLC register t holds the furthest; -workers 1). See ClientRegistryTrace.
ASSUME \A k \in 1..Len(Traces) : TLCSet(k, 0)
Progress ==
    IF Reached > TLCGet(t) THEN PrintT(<<"progress", t, Reached>>) /\ TLCSet(t, Reached)
                           ELSE TRUE

=============================================================================
