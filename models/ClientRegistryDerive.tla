------------------------ MODULE ClientRegistryDerive ------------------------
(***************************************************************************)
(* ClientRegistry with one history variable, `step`: the action (and its   *)
(* parameters) that produced the state. Nothing else changes: every        *)
(* disjunct is the model's own action, unchanged, in the order of          *)
(* ClientRegistry's Next. models/trace/derive.py dumps this spec's state   *)
(* graph (TLC -dump dot) and reads each edge's action off its target       *)
(* state, then turns paths of the graph into conformance vectors. The      *)
(* generator checks that the graph, with `step` projected away, has        *)
(* exactly the states TLC finds for ClientRegistry itself, so a disjunct   *)
(* missing here (or one Next gains later) fails generation.                *)
(***************************************************************************)
EXTENDS ClientRegistry

VARIABLE step

DInit == Init /\ step = <<"Init">>

DNext ==
    \/ ScanInactiveExpireFinish /\ step' = <<"ScanInactiveExpireFinish">>
    \/ \E g \in Groups : ScanInactiveCollect(g) /\ step' = <<"ScanInactiveCollect", g>>
    \/ \E g \in Groups, ch \in Channels :
         ScanInactiveExpire(g, ch) /\ step' = <<"ScanInactiveExpire", g, ch>>
    \/ \E ch \in Channels :
         \/ \E G \in SUBSET Groups, g \in Groups :
              HeartbeatStart(ch, G, g) /\ step' = <<"HeartbeatStart", ch, G, g>>
         \/ \E g \in Groups :
              \/ HeartbeatJoin(ch, g) /\ step' = <<"HeartbeatJoin", ch, g>>
              \/ Unregister(ch, g) /\ step' = <<"Unregister", ch, g>>
              \/ ChannelClosedLeave(ch, g) /\ step' = <<"ChannelClosedLeave", ch, g>>
         \/ UnregisterFinish(ch) /\ step' = <<"UnregisterFinish", ch>>
         \/ ChannelClosedStart(ch) /\ step' = <<"ChannelClosedStart", ch>>
         \/ ChannelClosedLeaveFinish(ch) /\ step' = <<"ChannelClosedLeaveFinish", ch>>
         \/ ChannelClosedFinish(ch) /\ step' = <<"ChannelClosedFinish", ch>>
         \/ AgeRequest(ch) /\ step' = <<"AgeRequest", ch>>
         \/ \E g \in Groups : Age(g, ch) /\ step' = <<"Age", g, ch>>

DSpec == DInit /\ [][DNext]_<<vars, step>>

=============================================================================
