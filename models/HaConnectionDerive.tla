------------------------- MODULE HaConnectionDerive -------------------------
(***************************************************************************)
(* HaConnection with one history variable, `step`: the action (and its    *)
(* parameters) that produced the state. Nothing else changes: every       *)
(* disjunct is the model's own action, unchanged, as in HaConnection's    *)
(* Next (Server, then Environment; the stutter of Terminated is left out: *)
(* TLC runs with -deadlock). models/trace/derive.py --model ha dumps this *)
(* spec's state graph and turns paths of it into the HA traces of         *)
(* tests/vectors/lifecycle/model/ha/; it checks that the graph, with      *)
(* `step` projected away, has exactly HaConnection's states and           *)
(* transitions, so a disjunct missing here fails generation.              *)
(***************************************************************************)
EXTENDS HaConnection

VARIABLE step

DInit == Init /\ step = <<"Init">>

DNext ==
    \/ \E c \in Conns :
         \/ Register(c) /\ step' = <<"Register", c>>
         \/ Begin(c) /\ step' = <<"Begin", c>>
         \/ SpawnReader(c) /\ step' = <<"SpawnReader", c>>
         \/ SpawnWriter(c) /\ step' = <<"SpawnWriter", c>>
         \/ OpenGate(c) /\ step' = <<"OpenGate", c>>
         \/ Store(c) /\ step' = <<"Store", c>>
         \/ Transfer(c) /\ step' = <<"Transfer", c>>
         \/ CloseConnection(c) /\ step' = <<"CloseConnection", c>>
         \/ \E t \in Tasks : StopSeen(c, t) /\ step' = <<"StopSeen", c, t>>
    \/ AcceptLoopExit /\ step' = <<"AcceptLoopExit">>
    \/ Drain /\ step' = <<"Drain">>
    \/ CloseAll /\ step' = <<"CloseAll">>
    \/ ShutdownReturn /\ step' = <<"ShutdownReturn">>
    \/ Append /\ step' = <<"Append">>
    \/ Cancel /\ step' = <<"Cancel">>
    \/ \E c \in Conns :
         \/ Accept(c) /\ step' = <<"Accept", c>>
         \/ PeerClose(c) /\ step' = <<"PeerClose", c>>
         \/ SpawnPanics(c) /\ step' = <<"SpawnPanics", c>>
         \/ \E o \in Offsets : Report(c, o) /\ step' = <<"Report", c, o>>
         \/ \E t \in Tasks :
              \/ IdleTimeout(c, t) /\ step' = <<"IdleTimeout", c, t>>
              \/ TaskFail(c, t) /\ step' = <<"TaskFail", c, t>>

DSpec == DInit /\ [][DNext]_<<vars, step>>

=============================================================================
