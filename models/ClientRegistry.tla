--------------------------- MODULE ClientRegistry ---------------------------
(***************************************************************************)
(* The broker's producer/consumer group registry under concurrency:        *)
(* heartbeats, unregisters, channel closes and expiry scans, interleaved   *)
(* at the granularity at which src/registry/client.rs takes its locks.     *)
(*                                                                         *)
(* Locking discipline (module docs of src/registry/client.rs): a channel's *)
(* mutex, then at most one shard lock at a time. Every change to a         *)
(* channel's memberships holds that channel's mutex for its whole          *)
(* duration. So in this model:                                             *)
(*  - the channel mutex is explicit (`lock`) and held across steps;        *)
(*  - each shard critical section is one atomic step. Shard locks are      *)
(*    never held across steps, so they need no variable; giving every      *)
(*    group its own shard yields a superset of the Rust's interleavings;   *)
(*  - a step may also take or drop the channel mutex, or do a critical     *)
(*    section that commutes with every other thread's steps (the clients   *)
(*    index entry of this channel), together with ONE shard critical       *)
(*    section that does not commute. This is Lipton's reduction (acquire   *)
(*    moves right, release moves left, commuting steps move both ways):    *)
(*    it removes interleavings that no other thread can tell apart, and    *)
(*    keeps every point where two non-commuting critical sections of one  *)
(*    operation can be separated by another thread.                        *)
(*                                                                         *)
(* Time is abstract: a membership is "fresh" or "stale" (older than the    *)
(* expiry of the next scan). Each ages on its own (Age), and so does the  *)
(* `now` of each heartbeat in flight (AgeRequest), as with a real clock:  *)
(* each scan compares with its own `now`, so memberships written at       *)
(* different times expire at different scans. Neither happens during a   *)
(* scan: a scan's threshold is fixed when it starts, and a heartbeat that *)
(* reads its `now` during a scan is fresh for it.                         *)
(*                                                                         *)
(* Faults (`Faults` in src/registry/client.rs):                            *)
(*   SplitRemoveIfEmpty  emptiness decided in one shard critical section,  *)
(*                       the key removed in a later one (#10698's shape)   *)
(*   KeepEmptyGroups     the last member leaves, the group stays (#8673)   *)
(*   RegisterAfterClose  a heartbeat ignores the tombstone                 *)
(***************************************************************************)
EXTENDS Integers, FiniteSets, TLC

CONSTANTS
    Channels,             \* connections (model values), all registered at the start
    Groups,               \* group names; the producer and consumer tables behave alike here
    NoGroup,              \* a model value: no second critical section pending
    SplitRemoveIfEmpty, KeepEmptyGroups, RegisterAfterClose

ASSUME NoGroup \notin Groups
ASSUME {SplitRemoveIfEmpty, KeepEmptyGroups, RegisterAfterClose} \subseteq BOOLEAN

NoCand == <<NoGroup, NoGroup>>

VARIABLES
    \* --- shared tables (shard-locked) ---
    groups,      \* SUBSET Groups: keys present in the producer/consumer tables
    seen,        \* [Groups -> [Channels -> {"none", "fresh", "stale"}]]: each group's Members
                 \*   (channel -> last seen), per membership (#10435)
    clients,     \* SUBSET Channels: the channels mapped from the one client id every channel
                 \*   uses (a reconnecting client, #6810: the hardest case for that index)
    live,        \* SUBSET Channels: the `channels` table
    \* --- per channel, behind its mutex (ChannelState) ---
    tomb,        \* [Channels -> BOOLEAN]: ChannelState.closed
    index,       \* [Channels -> SUBSET Groups]: producer_groups \cup consumer_groups
    hasCid,      \* [Channels -> BOOLEAN]: ChannelState.client_id is Some
    lock,        \* [Channels -> {"free", "req", "close", "scan"}]: who holds the mutex
    \* --- each channel's request handler (HEART_BEAT / UNREGISTER_CLIENT) ---
    reqOp,       \* [Channels -> {"idle", "hb", "unreg"}]: mid-operation, holding the mutex
    reqTodo,     \* [Channels -> SUBSET Groups]: the heartbeat's groups not joined yet
    reqStale,    \* [Channels -> BOOLEAN]: time passed since the heartbeat read its `now`
    reqPend,     \* [Channels -> Groups \cup {NoGroup}]: split fault: second section due
    \* --- each channel's close path (channel_closed) ---
    closePc,     \* [Channels -> {"open", "leaving", "done"}]
    closeTodo,   \* [Channels -> SUBSET Groups]: groups taken from the index, not left yet
    closePend,   \* [Channels -> Groups \cup {NoGroup}]
    \* --- the housekeeping thread (scan_inactive) ---
    scanPc,      \* "idle" | "collect" | "pick" | "expire2"
    scanTodo,    \* SUBSET Groups: shards not visited yet
    cands,       \* SUBSET (Groups \X Channels): candidates not processed yet
    scanCur,     \* split fault: the candidate whose second critical section is due
    \* --- ghost: the sequential specification ---
    registered   \* [Channels -> SUBSET Groups]: groups the channel's heartbeats joined, minus
                 \*   those it legitimately left since (its unregister, that membership's
                 \*   expiry; its close clears all)

vars == <<groups, seen, clients, live, tomb, index, hasCid, lock, reqOp, reqTodo, reqStale,
          reqPend, closePc, closeTodo, closePend, scanPc, scanTodo, cands, scanCur,
          registered>>

-----------------------------------------------------------------------------

Member(g, ch) == seen[g][ch] /= "none"
Empty(g)      == \A ch \in Channels : ~Member(g, ch)

TypeOK ==
    /\ groups \subseteq Groups
    /\ seen \in [Groups -> [Channels -> {"none", "fresh", "stale"}]]
    /\ clients \subseteq Channels /\ live \subseteq Channels
    /\ tomb \in [Channels -> BOOLEAN]
    /\ index \in [Channels -> SUBSET Groups]
    /\ hasCid \in [Channels -> BOOLEAN]
    /\ lock \in [Channels -> {"free", "req", "close", "scan"}]
    /\ reqOp \in [Channels -> {"idle", "hb", "unreg"}]
    /\ reqTodo \in [Channels -> SUBSET Groups]
    /\ reqStale \in [Channels -> BOOLEAN]
    /\ reqPend \in [Channels -> Groups \cup {NoGroup}]
    /\ closePc \in [Channels -> {"open", "leaving", "done"}]
    /\ closeTodo \in [Channels -> SUBSET Groups]
    /\ closePend \in [Channels -> Groups \cup {NoGroup}]
    /\ scanPc \in {"idle", "collect", "pick", "expire2"}
    /\ scanTodo \subseteq Groups
    /\ cands \subseteq Groups \X Channels
    /\ scanCur \in (Groups \X Channels) \cup {NoCand}
    /\ registered \in [Channels -> SUBSET Groups]
    /\ \A g \in Groups \ groups : Empty(g)       \* members live only inside a present group

Init ==
    /\ groups = {} /\ seen = [g \in Groups |-> [ch \in Channels |-> "none"]]
    /\ clients = {} /\ live = Channels               \* register_channel ran for each
    /\ tomb = [ch \in Channels |-> FALSE]
    /\ index = [ch \in Channels |-> {}]
    /\ hasCid = [ch \in Channels |-> FALSE]
    /\ lock = [ch \in Channels |-> "free"]
    /\ reqOp = [ch \in Channels |-> "idle"]
    /\ reqTodo = [ch \in Channels |-> {}]
    /\ reqStale = [ch \in Channels |-> FALSE]
    /\ reqPend = [ch \in Channels |-> NoGroup]
    /\ closePc = [ch \in Channels |-> "open"]
    /\ closeTodo = [ch \in Channels |-> {}]
    /\ closePend = [ch \in Channels |-> NoGroup]
    /\ scanPc = "idle" /\ scanTodo = {} /\ cands = {} /\ scanCur = NoCand
    /\ registered = [ch \in Channels |-> {}]

-----------------------------------------------------------------------------
(* ClientRegistry::leave: one shard critical section on group g for channel ch. It removes    *)
(* the membership and, if the group is now empty, the group, in the same critical section:     *)
(* unless KeepEmptyGroups (the group stays), or SplitRemoveIfEmpty (the removal is done in a   *)
(* later critical section; LeavePend names the group it is due for).                          *)

LeaveSeen(g, ch) == [seen EXCEPT ![g][ch] = "none"]
EmptyIn(s, g)    == \A c \in Channels : s[g][c] = "none"

LeaveGroups(g, s) ==
    IF EmptyIn(s, g) /\ ~KeepEmptyGroups /\ ~SplitRemoveIfEmpty THEN groups \ {g} ELSE groups

\* Only a leave that removed a membership (s /= seen) goes on to the second critical section:
\* the Rust's `leave` returns early when the channel is not in the group (its registration
\* was lost to the split fault), and records no *Finish.
LeavePend(g, s) ==
    IF EmptyIn(s, g) /\ s /= seen /\ ~KeepEmptyGroups /\ SplitRemoveIfEmpty THEN g ELSE NoGroup

\* The split fault's later critical section: `if let Ok(entry) = find_entry(..) { remove() }`
\* removes the key with whatever members it holds by then.
FinishGroups(g) == groups \ {g}
FinishSeen(g)   == [seen EXCEPT ![g] = [c \in Channels |-> "none"]]

\* join_producer / join_consumer: one shard critical section that finds or creates the group
\* and upserts (channel -> the heartbeat's now); then `st.*_groups.insert(name)` under the
\* channel mutex, merged (nothing else reads the index while the mutex is held).
JoinSeen(g, ch)    == [seen EXCEPT ![g][ch] = IF reqStale'[ch] THEN "stale" ELSE "fresh"]

-----------------------------------------------------------------------------
(* HEART_BEAT: ClientRegistry::heartbeat(ch, data, now) *)

\* Lock the channel mutex; refused if tombstoned (then nothing changes: not a step), unless
\* RegisterAfterClose; set_client_id (the clients index entry of this channel; commutes);
\* the first join (in any order: the Rust takes the body's order). A heartbeat naming one group
\* also drops the mutex here and has completed.
HeartbeatStart(ch, G, g) ==
    /\ reqOp[ch] = "idle" /\ lock[ch] = "free" /\ g \in G
    /\ ~tomb[ch] \/ RegisterAfterClose
    /\ clients' = clients \cup {ch}
    /\ hasCid' = [hasCid EXCEPT ![ch] = TRUE]
    /\ reqStale' = [reqStale EXCEPT ![ch] = FALSE]
    /\ groups' = groups \cup {g}
    /\ seen' = JoinSeen(g, ch)
    /\ index' = [index EXCEPT ![ch] = @ \cup {g}]
    /\ registered' = [registered EXCEPT ![ch] = @ \cup {g}]
    /\ IF G = {g}
         THEN UNCHANGED <<lock, reqOp, reqTodo>>
         ELSE /\ lock' = [lock EXCEPT ![ch] = "req"]
              /\ reqOp' = [reqOp EXCEPT ![ch] = "hb"]
              /\ reqTodo' = [reqTodo EXCEPT ![ch] = G \ {g}]
    /\ UNCHANGED <<live, tomb, reqPend, closePc, closeTodo, closePend, scanPc, scanTodo,
                   cands, scanCur>>

\* Each further group: one shard critical section. The last one drops the mutex.
HeartbeatJoin(ch, g) ==
    /\ reqOp[ch] = "hb" /\ g \in reqTodo[ch]
    /\ UNCHANGED reqStale
    /\ groups' = groups \cup {g}
    /\ seen' = JoinSeen(g, ch)
    /\ index' = [index EXCEPT ![ch] = @ \cup {g}]
    /\ registered' = [registered EXCEPT ![ch] = @ \cup {g}]
    /\ reqTodo' = [reqTodo EXCEPT ![ch] = @ \ {g}]
    /\ IF reqTodo[ch] = {g}
         THEN /\ lock' = [lock EXCEPT ![ch] = "free"]
              /\ reqOp' = [reqOp EXCEPT ![ch] = "idle"]
         ELSE UNCHANGED <<lock, reqOp>>
    /\ UNCHANGED <<clients, live, tomb, hasCid, reqPend, closePc, closeTodo, closePend,
                   scanPc, scanTodo, cands, scanCur>>

-----------------------------------------------------------------------------
(* UNREGISTER_CLIENT: ClientRegistry::unregister(ch, client_id, Some(g), None) *)

\* Lock; refused if tombstoned; if the index lists g: remove it there and leave(g); unlock.
\* With the split fault and an emptied group the mutex stays held until UnregisterFinish.
Unregister(ch, g) ==
    /\ reqOp[ch] = "idle" /\ lock[ch] = "free" /\ ~tomb[ch]
    /\ g \in index[ch]
    /\ LET s == LeaveSeen(g, ch) IN
         /\ seen' = s
         /\ groups' = LeaveGroups(g, s)
         /\ reqPend' = [reqPend EXCEPT ![ch] = LeavePend(g, s)]
         /\ IF LeavePend(g, s) = NoGroup
              THEN UNCHANGED <<lock, reqOp>>
              ELSE /\ lock' = [lock EXCEPT ![ch] = "req"]
                   /\ reqOp' = [reqOp EXCEPT ![ch] = "unreg"]
    /\ index' = [index EXCEPT ![ch] = @ \ {g}]
    /\ registered' = [registered EXCEPT ![ch] = @ \ {g}]
    /\ UNCHANGED <<clients, live, tomb, hasCid, reqTodo, reqStale, closePc, closeTodo,
                   closePend, scanPc, scanTodo, cands, scanCur>>

\* Split fault only: the later critical section removes the key; unlock.
UnregisterFinish(ch) ==
    /\ reqOp[ch] = "unreg"
    /\ groups' = FinishGroups(reqPend[ch])
    /\ seen' = FinishSeen(reqPend[ch])
    /\ reqPend' = [reqPend EXCEPT ![ch] = NoGroup]
    /\ lock' = [lock EXCEPT ![ch] = "free"]
    /\ reqOp' = [reqOp EXCEPT ![ch] = "idle"]
    /\ UNCHANGED <<clients, live, tomb, index, hasCid, reqTodo, reqStale, closePc, closeTodo,
                   closePend, scanPc, scanTodo, cands, scanCur, registered>>

-----------------------------------------------------------------------------
(* The connection closed: ClientRegistry::channel_closed(ch) *)

\* Lock; set the tombstone; take the group sets out of the index; then the first leave. With
\* no group to leave, the whole close is this step (unmap_client commutes; the channels table
\* removal is its one non-commuting critical section). A second call finds the tombstone and
\* returns false, changing nothing: exactly-once.
ChannelClosedStart(ch) ==
    /\ closePc[ch] = "open" /\ lock[ch] = "free"
    /\ tomb' = [tomb EXCEPT ![ch] = TRUE]
    /\ index' = [index EXCEPT ![ch] = {}]
    /\ registered' = [registered EXCEPT ![ch] = {}]
    /\ IF index[ch] = {}
         THEN /\ clients' = clients \ {ch}
              /\ hasCid' = [hasCid EXCEPT ![ch] = FALSE]
              /\ live' = live \ {ch}
              /\ closePc' = [closePc EXCEPT ![ch] = "done"]
              /\ UNCHANGED <<groups, seen, lock, closeTodo, closePend>>
         ELSE \E g \in index[ch] :
              LET s == LeaveSeen(g, ch) IN
              /\ seen' = s
              /\ groups' = LeaveGroups(g, s)
              /\ closePend' = [closePend EXCEPT ![ch] = LeavePend(g, s)]
              /\ closeTodo' = [closeTodo EXCEPT ![ch] = index[ch] \ {g}]
              /\ lock' = [lock EXCEPT ![ch] = "close"]
              /\ closePc' = [closePc EXCEPT ![ch] = "leaving"]
              /\ UNCHANGED <<clients, hasCid, live>>
    /\ UNCHANGED <<reqOp, reqTodo, reqStale, reqPend, scanPc, scanTodo, cands, scanCur>>

\* leave(g, ChannelClosed) for each further group the channel was in.
ChannelClosedLeave(ch, g) ==
    /\ closePc[ch] = "leaving" /\ closePend[ch] = NoGroup /\ g \in closeTodo[ch]
    /\ LET s == LeaveSeen(g, ch) IN
         /\ seen' = s
         /\ groups' = LeaveGroups(g, s)
         /\ closePend' = [closePend EXCEPT ![ch] = LeavePend(g, s)]
    /\ closeTodo' = [closeTodo EXCEPT ![ch] = @ \ {g}]
    /\ UNCHANGED <<clients, live, tomb, index, hasCid, lock, reqOp, reqTodo, reqStale,
                   reqPend, closePc, scanPc, scanTodo, cands, scanCur, registered>>

\* Split fault only: the later critical section of a leave.
ChannelClosedLeaveFinish(ch) ==
    /\ closePc[ch] = "leaving" /\ closePend[ch] /= NoGroup
    /\ groups' = FinishGroups(closePend[ch])
    /\ seen' = FinishSeen(closePend[ch])
    /\ closePend' = [closePend EXCEPT ![ch] = NoGroup]
    /\ UNCHANGED <<clients, live, tomb, index, hasCid, lock, reqOp, reqTodo, reqStale,
                   reqPend, closePc, closeTodo, scanPc, scanTodo, cands, scanCur, registered>>

\* unmap_client, then remove the channel from the `channels` table; unlock.
ChannelClosedFinish(ch) ==
    /\ closePc[ch] = "leaving" /\ closePend[ch] = NoGroup /\ closeTodo[ch] = {}
    /\ clients' = clients \ {ch}
    /\ hasCid' = [hasCid EXCEPT ![ch] = FALSE]
    /\ live' = live \ {ch}
    /\ lock' = [lock EXCEPT ![ch] = "free"]
    /\ closePc' = [closePc EXCEPT ![ch] = "done"]
    /\ UNCHANGED <<groups, seen, tomb, index, reqOp, reqTodo, reqStale, reqPend, closeTodo,
                   closePend, scanPc, scanTodo, cands, scanCur, registered>>

-----------------------------------------------------------------------------
(* The expiry scan: ClientRegistry::scan_inactive(now) *)

\* `for_each_shard`: one shard critical section collects the group's expired memberships.
\* The first one also starts the scan; after the last, candidates are processed (if any).
ScanInactiveCollect(g) ==
    /\ \/ scanPc = "idle" /\ scanTodo' = Groups \ {g}
                          /\ cands' = {<<g, ch>> : ch \in {c \in Channels : seen[g][c] = "stale"}}
       \/ scanPc = "collect" /\ g \in scanTodo
                             /\ scanTodo' = scanTodo \ {g}
                             /\ cands' = cands \cup
                                  {<<g, ch>> : ch \in {c \in Channels : seen[g][c] = "stale"}}
    /\ scanPc' = IF scanTodo' /= {} THEN "collect" ELSE IF cands' /= {} THEN "pick" ELSE "idle"
    /\ UNCHANGED <<groups, seen, clients, live, tomb, index, hasCid, lock, reqOp, reqTodo,
                   reqStale, reqPend, closePc, closeTodo, closePend, scanCur, registered>>

\* One candidate (the Rust takes them sorted; any order here): `self.channel(ch)` looks the
\* slot up in the channels table (a missing one was closed: skip); lock its mutex; skip if
\* tombstoned; leave(g, Expired, Some(now)) re-checks under the shard lock that the membership
\* is still expired (a heartbeat that refreshed it wins) and removes it; then
\* `st.groups_mut(kind).remove(&group)`; unlock. The lookup is merged with the locked part:
\* a lookup before a concurrent close that locks after it sees the tombstone and skips, the
\* same outcome as a lookup that misses the closed channel.
ScanInactiveExpire(g, ch) ==
    /\ scanPc = "pick" /\ <<g, ch>> \in cands
    /\ cands' = cands \ {<<g, ch>>}
    /\ IF ch \in live /\ ~tomb[ch] /\ seen[g][ch] = "stale"
         THEN /\ lock[ch] = "free"
              /\ LET s == LeaveSeen(g, ch) IN
                   /\ seen' = s
                   /\ groups' = LeaveGroups(g, s)
                   /\ index' = [index EXCEPT ![ch] = @ \ {g}]
                   /\ registered' = [registered EXCEPT ![ch] = @ \ {g}]
                   /\ IF LeavePend(g, s) = NoGroup
                        THEN /\ scanPc' = IF cands' = {} THEN "idle" ELSE "pick"
                             /\ UNCHANGED <<lock, scanCur>>
                        ELSE /\ lock' = [lock EXCEPT ![ch] = "scan"]
                             /\ scanPc' = "expire2"
                             /\ scanCur' = <<g, ch>>
         ELSE /\ scanPc' = IF cands' = {} THEN "idle" ELSE "pick"
              /\ UNCHANGED <<seen, groups, index, registered, lock, scanCur>>
    /\ UNCHANGED <<clients, live, tomb, hasCid, reqOp, reqTodo, reqStale, reqPend, closePc,
                   closeTodo, closePend, scanTodo>>

\* Split fault only: the later critical section; unlock.
ScanInactiveExpireFinish ==
    /\ scanPc = "expire2"
    /\ groups' = FinishGroups(scanCur[1])
    /\ seen' = FinishSeen(scanCur[1])
    /\ lock' = [lock EXCEPT ![scanCur[2]] = "free"]
    /\ scanPc' = IF cands = {} THEN "idle" ELSE "pick"
    /\ scanCur' = NoCand
    /\ UNCHANGED <<clients, live, tomb, index, hasCid, reqOp, reqTodo, reqStale, reqPend,
                   closePc, closeTodo, closePend, scanTodo, cands, registered>>

-----------------------------------------------------------------------------

\* Time passes: one membership becomes older than the expiry. Not during a scan (see the header).
Age(g, ch) ==
    /\ scanPc = "idle" /\ seen[g][ch] = "fresh"
    /\ seen' = [seen EXCEPT ![g][ch] = "stale"]
    /\ UNCHANGED <<groups, clients, live, tomb, index, hasCid, lock, reqOp, reqTodo, reqStale,
                   reqPend, closePc, closeTodo, closePend, scanPc, scanTodo, cands, scanCur,
                   registered>>

\* Time passes: the `now` a heartbeat in flight read is now older than the expiry, so its further
\* joins write stale memberships. Not during a scan.
AgeRequest(ch) ==
    /\ scanPc = "idle" /\ reqOp[ch] = "hb" /\ ~reqStale[ch]
    /\ reqStale' = [reqStale EXCEPT ![ch] = TRUE]
    /\ UNCHANGED <<groups, seen, clients, live, tomb, index, hasCid, lock, reqOp, reqTodo,
                   reqPend, closePc, closeTodo, closePend, scanPc, scanTodo, cands, scanCur,
                   registered>>

Next ==
    \/ ScanInactiveExpireFinish
    \/ \E g \in Groups : ScanInactiveCollect(g)
    \/ \E g \in Groups, ch \in Channels : ScanInactiveExpire(g, ch)
    \/ \E ch \in Channels :
         \/ \E G \in SUBSET Groups, g \in Groups : HeartbeatStart(ch, G, g)
         \/ \E g \in Groups : HeartbeatJoin(ch, g) \/ Unregister(ch, g)
                              \/ ChannelClosedLeave(ch, g)
         \/ UnregisterFinish(ch) \/ ChannelClosedStart(ch) \/ ChannelClosedLeaveFinish(ch)
         \/ ChannelClosedFinish(ch) \/ AgeRequest(ch)
         \/ \E g \in Groups : Age(g, ch)

Spec == Init /\ [][Next]_vars

\* Channels are interchangeable, and so are groups (the two tables behave alike here).
Symmetry == Permutations(Channels) \cup Permutations(Groups)

-----------------------------------------------------------------------------
(* Invariants (names as in docs/SPEC.md (section 4) and src/core/tables.rs check_invariants) *)

\* No channel mutex is held: no operation that changes memberships is mid-flight.
Quiescent == \A ch \in Channels : lock[ch] = "free"

\* Once the last channel of a group leaves, the group is gone (at quiescence).
NoEmptyGroup == Quiescent => \A g \in groups : ~Empty(g)

\* Stronger, and what the atomic remove-if-empty buys: no state at all, even mid-operation,
\* has an empty group in the table.
NoEmptyGroupEver == \A g \in groups : ~Empty(g)

\* A heartbeat's registration, once made, stays in the table while the channel is not closed
\* (until the channel's own unregister or the expiry of that membership removes it).
NoLostRegistration ==
    \A ch \in Channels : ~tomb[ch] =>
        \A g \in registered[ch] : g \in groups /\ Member(g, ch)

\* After a channel is closed (channel_closed returned), nothing re-registers it: not the table
\* of channels, not the client ids, not any group, not its own index.
NoResurrection ==
    \A ch \in Channels : closePc[ch] = "done" =>
        /\ ch \notin live /\ ch \notin clients
        /\ \A g \in Groups : ~Member(g, ch)
        /\ lock[ch] = "free" => index[ch] = {}

\* group -> channels and channel -> groups are exact inverses, and the client id maps live
\* channels only; for every channel whose mutex is free (no operation is changing its state).
IndexesConsistent ==
    \A ch \in Channels : lock[ch] = "free" =>
        /\ \A g \in Groups : Member(g, ch) <=> g \in index[ch]
        /\ (ch \in clients) <=> hasCid[ch]
        /\ ch \in clients => ch \in live
        /\ index[ch] /= {} => ch \in live

=============================================================================
