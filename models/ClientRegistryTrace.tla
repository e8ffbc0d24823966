------------------------- MODULE ClientRegistryTrace -------------------------
(***************************************************************************)
(* Trace validation of ClientRegistry: is a trace the Rust recorded (one   *)
(* event per model action, in the order the actions took effect) a        *)
(* behaviour of the model? See models/README.md, "Trace validation".      *)
(*                                                                         *)
(* ClientRegistry is EXTENDed unchanged. A behaviour of this spec is one  *)
(* of ClientRegistry (each step is one of its actions, or for              *)
(* HeartbeatRefused a stutter) paired with a position in the trace:       *)
(*   - each event is its model action, enabled, with the event's          *)
(*     parameters (a ScanInactiveCollect event is one action per group it  *)
(*     lists, nothing in between: one shard critical section);           *)
(*   - between events, only what the code does not record: the ageing   *)
(*     of the memberships and requests a scan finds expired, just before  *)
(*     its ScanInactiveStart; and, within a scan, ScanInactiveCollect(g)  *)
(*     of each group g that none of its collects lists, as soon as g is   *)
(*     not in the table.                                                  *)
(* A trace is accepted iff some behaviour matches all of it and ends      *)
(* Complete (every operation finished). models/trace/validate.py writes   *)
(* the module that binds Traces and reads the verdict off Progress.       *)
(*                                                                         *)
(* Several traces can share a TLC run: t picks one in the initial state,  *)
(* and their behaviours never meet. validate.py numbers each trace's      *)
(* channels 1, 2, ... and groups "g1", "g2", ..., and sets Channels and   *)
(* Groups to the largest trace's: a channel a trace never names never     *)
(* acts, and a group it never names never has a member, so each scan     *)
(* collects it as unlisted. The verdicts are those of separate runs.     *)
(***************************************************************************)
EXTENDS ClientRegistry, Sequences, Naturals, TLC

CONSTANT Traces   \* <<trace_1, ..., trace_N>>: each a sequence of event records (below)

(* Event records (JSON null is NoGroup; a set where the JSON has a list, except gseq):     *)
(*   [action |-> "HeartbeatStart", ch, G, g]        [action |-> "HeartbeatJoin", ch, g]       *)
(*   [action |-> "HeartbeatRefused", ch]            [action |-> "Unregister", ch, g]         *)
(*   [action |-> "UnregisterFinish", ch]            [action |-> "ChannelClosedStart", ch, g] *)
(*   [action |-> "ChannelClosedLeave", ch, g]       [action |-> "ChannelClosedLeaveFinish", ch] *)
(*   [action |-> "ChannelClosedFinish", ch]                                                  *)
(*   [action |-> "ScanInactiveCollect", gseq, gs, cs]  (gseq: the groups as a sequence;      *)
(*                                                     gs: the same as a set; cs: cands)    *)
(*   [action |-> "ScanInactiveExpire", g, ch, expired] [action |-> "ScanInactiveExpireFinish"] *)
(*   [action |-> "ScanInactiveStart", listed, cs]  (validate.py adds, from the scan's collects  *)
(*                                                up to its End: listed, the groups they list; *)
(*                                                cs, the candidates they list)              *)
(*   [action |-> "ScanInactiveEnd"]                                                            *)

VARIABLES
    t,      \* which trace
    i,      \* the next event of Traces[t] to match
    sub,    \* within a ScanInactiveCollect event: how many of its groups are collected
    inScan, \* between a ScanInactiveStart and its ScanInactiveEnd
    unl     \* in a scan: the groups none of its collects lists, not collected yet

traceVars == <<t, i, sub, inScan, unl>>
allVars   == <<vars, traceVars>>

\* TLC evaluates a constant-level definition once, at start-up; a CONSTANT bound with `<-` in the
\* .cfg is evaluated again at every use (50 times slower on a batch of 40 short traces).
TheTraces == Traces

Tr == TheTraces[t]

-----------------------------------------------------------------------------
(* One event, one model action *)

\* HeartbeatRefused: no model step (with RegisterAfterClose a closed channel's heartbeat is
\* never refused). The Rust refuses under the channel mutex, so the mutex is free and no
\* request of this channel is in flight; and the tombstone is set.
Refused(ch) ==
    /\ ~RegisterAfterClose
    /\ tomb[ch] /\ lock[ch] = "free" /\ reqOp[ch] = "idle"
    /\ UNCHANGED vars

\* ChannelClosedStart(ch) chooses the first group to leave (\E g \in index[ch]); the event
\* names it: the model's choice is the one group of index[ch] that closeTodo' lacks.
CloseStart(ch, g) ==
    IF g = NoGroup
      THEN index[ch] = {} /\ ChannelClosedStart(ch)
      ELSE g \in index[ch] /\ ChannelClosedStart(ch) /\ g \notin closeTodo'[ch]

\* ScanInactiveExpire(g, ch) takes its THEN branch (the membership goes, so seen[g][ch] changes
\* from "stale" to "none") iff the event says expired; the ELSE branch changes no membership.
Expire(g, ch, expired) ==
    /\ ScanInactiveExpire(g, ch)
    /\ (seen'[g][ch] /= seen[g][ch]) = expired

\* ScanInactiveStart: no model step (the model's scan starts at its first collect). The model's
\* scan is idle, and what the scan finds expired has aged (AgeBeforeScan). Its unlisted groups are
\* then collected as soon as they are not in the table (CollectUnlisted).
ScanStart(e) ==
    /\ ~inScan /\ scanPc = "idle"
    /\ \A c \in e.cs : seen[c[1]][c[2]] /= "fresh"
    /\ inScan' = TRUE /\ unl' = Groups \ e.listed
    /\ UNCHANGED vars

\* ScanInactiveEnd: every group collected, every candidate processed.
ScanEnd ==
    /\ inScan /\ unl = {} /\ scanPc = "idle"
    /\ inScan' = FALSE
    /\ UNCHANGED <<vars, unl>>

\* Every event but ScanInactiveCollect: one action, then the next event. The scan's own events
\* only between its Start and End.
Single(e) ==
    \/ e.action = "HeartbeatStart"           /\ HeartbeatStart(e.ch, e.G, e.g)
    \/ e.action = "HeartbeatJoin"            /\ HeartbeatJoin(e.ch, e.g)
    \/ e.action = "HeartbeatRefused"         /\ Refused(e.ch)
    \/ e.action = "Unregister"               /\ Unregister(e.ch, e.g)
    \/ e.action = "UnregisterFinish"         /\ UnregisterFinish(e.ch)
    \/ e.action = "ChannelClosedStart"       /\ CloseStart(e.ch, e.g)
    \/ e.action = "ChannelClosedLeave"       /\ ChannelClosedLeave(e.ch, e.g)
    \/ e.action = "ChannelClosedLeaveFinish" /\ ChannelClosedLeaveFinish(e.ch)
    \/ e.action = "ChannelClosedFinish"      /\ ChannelClosedFinish(e.ch)
    \/ e.action = "ScanInactiveExpire"       /\ inScan /\ Expire(e.g, e.ch, e.expired)
    \/ e.action = "ScanInactiveExpireFinish" /\ inScan /\ ScanInactiveExpireFinish

\* ScanInactiveCollect {groups, cands}: ScanInactiveCollect(g) for each listed g, in the listed
\* order (they commute: one shard critical section), each g present in the table (the Rust saw
\* it in the shard). After the last, the candidates these groups added must be exactly cands:
\* the groups were not collected before in this scan, so cands held none of theirs.
Collect(e) ==
    LET g == e.gseq[sub + 1] IN
    /\ inScan
    /\ g \in groups
    /\ ScanInactiveCollect(g)
    /\ IF sub + 1 = Len(e.gseq)
         THEN /\ {c \in cands' : c[1] \in e.gs} = e.cs
              /\ i' = i + 1 /\ sub' = 0
         ELSE /\ sub' = sub + 1 /\ UNCHANGED i

\* A scan's unlisted groups not in the table: collected before anything else happens.
Unlisted == IF inScan THEN unl \ groups ELSE {}

Event ==
    /\ i <= Len(Tr)
    /\ Unlisted = {}
    /\ UNCHANGED <<t, inScan, unl>>
    /\ IF Tr[i].action = "ScanInactiveCollect"
         THEN Collect(Tr[i])
         ELSE sub = 0 /\ Single(Tr[i]) /\ i' = i + 1 /\ UNCHANGED sub

ScanEvent ==
    /\ i <= Len(Tr) /\ sub = 0 /\ Unlisted = {}
    /\ Tr[i].action \in {"ScanInactiveStart", "ScanInactiveEnd"}
    /\ IF Tr[i].action = "ScanInactiveStart" THEN ScanStart(Tr[i]) ELSE ScanEnd
    /\ i' = i + 1 /\ UNCHANGED <<t, sub>>

-----------------------------------------------------------------------------
(* The model's steps the code does not record *)

(* Ageing (Age, AgeRequest) changes what a later scan finds expired, and nothing else: it can  *)
(* be moved later, up to the next scan's start, onto the memberships as they are then (a       *)
(* membership written in between by a heartbeat whose `now` had aged is stale as written).    *)
(* So it is tried only just before a ScanInactiveStart: every membership that the scan lists  *)
(* as a candidate and that is fresh ages, in a fixed order; a heartbeat in flight whose       *)
(* channel the scan lists may age its `now` (its joins during the scan then write stale).    *)
AgeBeforeScan ==
    /\ i <= Len(Tr) /\ Tr[i].action = "ScanInactiveStart" /\ ~inScan
    /\ LET fresh == {c \in Tr[i].cs : seen[c[1]][c[2]] = "fresh"} IN
         \/ fresh /= {} /\ Age((CHOOSE c \in fresh : TRUE)[1], (CHOOSE c \in fresh : TRUE)[2])
         \/ \E c \in Tr[i].cs : AgeRequest(c[2])
    /\ UNCHANGED traceVars

(* Within a scan, the Rust visits the shard of each group it does not list while that group is *)
(* not in the table, and records nothing. Such a collect changes only the scan's variables, so *)
(* it can be moved earlier up to the first moment in the scan the group is not in the table:   *)
(* it is done there, in a fixed order, before the next event.                                 *)
CollectUnlisted ==
    /\ sub = 0 /\ Unlisted /= {}
    /\ LET g == CHOOSE g \in Unlisted : TRUE IN
         /\ ScanInactiveCollect(g)
         /\ unl' = unl \ {g}
    /\ UNCHANGED <<t, i, sub, inScan>>

-----------------------------------------------------------------------------

TraceInit == Init /\ t \in 1..Len(TheTraces) /\ i = 1 /\ sub = 0 /\ inScan = FALSE /\ unl = {}

TraceNext == Event \/ ScanEvent \/ AgeBeforeScan \/ CollectUnlisted

TraceSpec == TraceInit /\ [][TraceNext]_allVars

\* Overrides ClientRegistry's Symmetry in the .cfg (TLC would compute it at start-up).
NoSymmetry == {}

-----------------------------------------------------------------------------
(* Verdicts *)

\* Every event matched, and every operation finished: no channel mutex held (so no heartbeat,
\* unregister or close is half-way) and no scan running. A recording of a run whose threads all
\* returned ends so (its last scan ended with ScanInactiveEnd); a trace cut mid-run only reaches
\* i > Len(Tr).
Complete == i > Len(Tr) /\ sub = 0 /\ ~inScan /\ Quiescent /\ scanPc = "idle"

\* For a run by hand on one trace: TLC reports the violation with a behaviour of the model that
\* matches the whole trace (TraceNotDone) or matches it and ends complete (TraceNotComplete).
TraceNotDone     == i <= Len(Tr)
TraceNotComplete == ~Complete

\* How far into trace t a state is: i (events 1..i-1 matched), Len + 2 once complete.
Reached == IF Complete THEN Len(Tr) + 2 ELSE i

\* Always TRUE. Prints <<"progress", t, Reached>> whenever a state gets further into trace t than
\* any before (TLC register t holds the furthest; -workers 1, so one register set). The last line
\* for t gives the verdict: Len + 2 accepted; Len + 1 matched but unfinished; else rejected at
\* event Reached, the first event no behaviour of the model could take.
ASSUME \A k \in 1..Len(Traces) : TLCSet(k, 0)
Progress ==
    IF Reached > TLCGet(t) THEN PrintT(<<"progress", t, Reached>>) /\ TLCSet(t, Reached)
                           ELSE TRUE

=============================================================================
