----------------------------- MODULE Replication -----------------------------
(***************************************************************************)
(* Epoch-based replication of the commit log, with truncation and          *)
(* failover: RocketMQ 5's "auto-switch" HA, as the design for replication  *)
(* that cannot diverge would run it on top of src/store/mod.rs (CommitLog: *)
(* append, append_raw at the max offset, flush) and src/core/ha.rs         *)
(* (HaState::Handshake, HaState::Transfer). docs/SPEC.md section 1.3 keeps *)
(* this protocol out of the current scope; the simulation's finding        *)
(* finding_master_crash_after_unsynced_acks_diverges (docs/SPEC.md) is the *)
(* classic-HA divergence it removes.                                       *)
(*                                                                         *)
(* Upstream this follows (RocketMQ 5.1, store/ha/autoswitch and the        *)
(* controller):                                                            *)
(*   EpochFileCache        the epoch file: appendEntry (refuses an entry   *)
(*                         whose epoch or start is not above the last      *)
(*                         one's), truncateSuffixByOffset,                 *)
(*                         findConsistentPoint                             *)
(*   AutoSwitchHAClient    the slave: the handshake (the master's epoch    *)
(*                         entries and max offset), doTruncate (the commit *)
(*                         log first, then the epoch file), transfer       *)
(*                         frames that carry their epoch and its start     *)
(*   AutoSwitchHAConnection  the master's side of one slave: the handshake,*)
(*                         transfer frames that never cross an epoch end,  *)
(*                         the slave's offset reports                      *)
(*   AutoSwitchHAService   maybeExpandInSyncStateSet, the shrink check     *)
(*                         (haMaxTimeSlaveNotCatchup, or no connection),   *)
(*                         computeConfirmOffset, getSyncStateSet (the      *)
(*                         union of the local set and the one sent to the  *)
(*                         controller while the change is in flight)       *)
(*   ReplicasManager, ReplicasInfoManager.electMaster, DefaultElectPolicy  *)
(*                         the controller: AlterSyncStateSet, elections    *)
(*                         (newest epoch, then largest max offset), epochs *)
(*                         that only grow, a new master's sync state set   *)
(*                         is itself alone                                 *)
(*                                                                         *)
(* A log entry is the epoch it was written in. That is enough to tell      *)
(* entries apart: only the master of an epoch writes entries of that       *)
(* epoch, it writes each offset once (its log is cut only by a crash, and  *)
(* a crashed master never writes in that epoch again), so <<epoch,         *)
(* offset>> names one value. Two logs are equal as values iff their epoch  *)
(* tags are equal, which is what the invariants compare.                   *)
(*                                                                         *)
(* Offsets are positions: the entry at position k (1-based) starts at      *)
(* offset k - 1, and a log of length n has max offset n. An epoch entry    *)
(* <<e, s>> says: the entries from offset s on (positions s+1, ...) up to  *)
(* the next entry's start were written in epoch e.                         *)
(*                                                                         *)
(* Switches (each one a fault; all FALSE in Replication.cfg):              *)
(*   SkipTruncation     the slave reports its own max offset and keeps its *)
(*                      log (upstream classic HA, DefaultHAClient)         *)
(*   WrongEpoch         the consistent point trusts the slave's newest     *)
(*                      epoch: its own max offset capped by the master's,  *)
(*                      without looking that epoch (number and start) up   *)
(*                      in the master's list                               *)
(*   AckBeforeHandshake the master counts a slave's report (ack, in-sync   *)
(*                      set, confirm) from the moment it connects, before  *)
(*                      the handshake's truncation                         *)
(*   EpochsFirst        the handshake cuts the epoch file first and the    *)
(*                      commit log second (the reverse of doTruncate)      *)
(*   EmptyEpochsKeepLog a slave with an empty epoch file keeps its log     *)
(*                      (doTruncate's shortcut for "a new replica", which  *)
(*                      assumes an empty epoch file means an empty log)    *)
(*   ElectAnyInSync     the controller elects any live member of its       *)
(*                      in-sync set, not the most up-to-date one           *)
(*   ConfirmLocalIsr    a confirm waits for the acks of the master's local *)
(*                      set only, not of its union with the controller's   *)
(*   CountLocalIsr      MinInSync is counted over the master's own set     *)
(*                      (getSyncStateSet), not over the controller's       *)
(*   ShrinkUnsynced     a change that takes the controller's set below     *)
(*                      MinInSync is published before the master syncs     *)
(* MinInSync = 1 (Replication_bug_mininsync1.cfg) is upstream's default    *)
(* minInSyncReplicas: a lone master confirms its own unsynced entries.     *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS
    Replicas,            \* the brokers of one group (model values)
    MaxLen,              \* a master appends while its log is shorter than this
    MaxCrashes,          \* crashes in a behaviour, at most
    MaxElections,        \* elections in a behaviour, at most (epochs 1 .. 1 + MaxElections)
    MaxDemotes,          \* admin demotions of a live master, at most (0: none)
    MaxDisconnects,      \* slave connections dropped while master and slave stay up, at most
    MinInSync,           \* minInSyncReplicas: the in-sync set (master included) a confirm needs
    SkipTruncation, WrongEpoch, AckBeforeHandshake, EpochsFirst, ElectAnyInSync,
    ConfirmLocalIsr, CountLocalIsr, ShrinkUnsynced, EmptyEpochsKeepLog

ASSUME Cardinality(Replicas) >= 1
ASSUME {MaxLen, MaxCrashes, MaxElections, MaxDemotes, MaxDisconnects, MinInSync} \subseteq Nat
ASSUME MinInSync >= 1
ASSUME {SkipTruncation, WrongEpoch, AckBeforeHandshake, EpochsFirst, ElectAnyInSync,
        ConfirmLocalIsr, CountLocalIsr, ShrinkUnsynced, EmptyEpochsKeepLog} \subseteq BOOLEAN

Epochs  == 1 .. 1 + MaxElections
Offsets == 0 .. MaxLen
NoCut   == MaxLen + 1          \* "no truncation half done" (Naturals has no -1)
Roles   == {"master", "slave", "down"}
\* A slave's connection to the live master:
\*   none        not connected (no master, or not yet)
\*   handshake   connected; the master's epoch entries and max offset are on their way
\*   truncated   the commit log and the epoch file are cut to the consistent point; the
\*               slave has not reported its offset yet
\*   transfer    reported; the master sends entries and counts the slave's reports
Phases  == {"none", "handshake", "truncated", "transfer"}

VARIABLES
    log,          \* [Replicas -> Seq(Epochs)]: the commit log, each entry tagged with its epoch
    synced,       \* [Replicas -> Offsets]: the durable prefix (CommitLog::flush syncs it all)
    epochs,       \* [Replicas -> Seq(<<epoch, start>>)]: the epoch file, always durable
                  \*   (EpochFileCache writes it with fsync before the entry takes effect)
    role,         \* [Replicas -> Roles]
    conn,         \* [Replicas -> Phases]: a slave's connection to the live master
    cut,          \* [Replicas -> Offsets \cup {NoCut}]: the consistent point of a handshake
                  \*   whose first truncation step is done and whose second is not
    ack,          \* [Replicas -> Offsets]: the master's view of the slave's last report
                  \*   (0 while there is no connection)
    isr,          \* SUBSET Replicas: the live master's local in-sync set ({} without master)
    controller,   \* SUBSET Replicas: the in-sync set the controller holds (elections use it)
    epoch,        \* the controller's last epoch (new epochs come from it, strictly growing)
    confirmed,    \* the highest offset a master reported as replicated (wait_for_replication
                  \*   returned OK for it)
    confirmedLog, \* that master's log up to `confirmed`, at the time
    crashes, elections, demotes, disconnects   \* the bounds' counters

vars == <<log, synced, epochs, role, conn, cut, ack, isr, controller, epoch, confirmed,
          confirmedLog, crashes, elections, demotes, disconnects>>

-----------------------------------------------------------------------------
(* Helpers *)

Min(a, b)    == IF a <= b THEN a ELSE b
MinOf(S)     == CHOOSE x \in S : \A y \in S : x <= y
MaxOf(S)     == CHOOSE x \in S : \A y \in S : y <= x
IsPrefix(a, b) == Len(a) <= Len(b) /\ SubSeq(b, 1, Len(a)) = a

HasMaster    == \E r \in Replicas : role[r] = "master"
TheMaster    == CHOOSE r \in Replicas : role[r] = "master"

LastEpoch(E) == IF E = <<>> THEN 0 ELSE E[Len(E)][1]
LastStart(E) == IF E = <<>> THEN 0 ELSE E[Len(E)][2]
\* The start of epoch e in the epoch file E (0 if E has no such entry, which a well-formed
\* master never lacks for an epoch in its log: EpochsMatchLog).
StartOf(E, e) == IF \E i \in 1 .. Len(E) : E[i][1] = e
                   THEN E[CHOOSE i \in 1 .. Len(E) : E[i][1] = e][2] ELSE 0
\* The end of the i-th epoch of E: the next entry's start, or the log's max offset for the
\* last entry (EpochFileCache.setLastEpochEntryEndOffset).
EndOf(E, i, max) == IF i = Len(E) THEN max ELSE E[i + 1][2]
\* EpochFileCache.truncateSuffixByOffset(p): keep the entries that start below p. The starts
\* strictly increase (EpochsWellFormed), so they are a prefix of the file.
KeepBelow(E, p) == SubSeq(E, 1, Cardinality({i \in 1 .. Len(E) : E[i][2] < p}))

\* EpochFileCache.findConsistentPoint, as AutoSwitchHAClient.doTruncate calls it: walk the
\* local entries from the newest; the first one the master's list holds with the same epoch
\* AND the same start gives the point: the lower of its two ends. No common entry: 0.
\* Upstream differs in two corner cases; the model takes the choice that is sound whatever
\* the slave's files hold:
\*   - an empty local epoch file: doTruncate skips the truncation and reports 0 without
\*     cutting the log ("a new replica"); here the point is 0 and the log is cut to 0. A
\*     slave with bytes but no epoch entry cannot tell which of them agree with the master.
\*     With the log cut first such a slave never exists (EpochsWellFormed), and the two
\*     rules give the same state graph; with EpochsFirst it does, and the shortcut
\*     (EmptyEpochsKeepLog) then keeps a divergent log;
\*   - no common entry: doTruncate fails the handshake (and the client retries forever);
\*     here the point is 0, which is always safe for the slave's log (the empty log is a
\*     prefix of every log).
ConsistentPoint(L, lmax, M, mmax) ==
    LET C == {i \in 1 .. Len(L) : \E j \in 1 .. Len(M) : M[j] = L[i]}
    IN  IF L = <<>> /\ EmptyEpochsKeepLog THEN lmax
        ELSE IF C = {} THEN 0
        ELSE LET i == MaxOf(C)
                 j == CHOOSE j \in 1 .. Len(M) : M[j] = L[i]
             IN  Min(EndOf(L, i, lmax), EndOf(M, j, mmax))

\* WrongEpoch: the slave trusts its newest epoch and keeps its log up to the master's max.
WrongPoint(L, lmax, M, mmax) == IF L = <<>> THEN 0 ELSE Min(lmax, mmax)

\* The point slave s truncates to against master m. SkipTruncation: its own max offset.
PointFor(s, m) ==
    IF SkipTruncation THEN Len(log[s])
    ELSE IF WrongEpoch THEN WrongPoint(epochs[s], Len(log[s]), epochs[m], Len(log[m]))
    ELSE ConsistentPoint(epochs[s], Len(log[s]), epochs[m], Len(log[m]))

\* Whether the master counts slave s's reports: from the report that ends the handshake
\* (AutoSwitchHAConnection counts offsets only in TRANSFER); AckBeforeHandshake: from the
\* connection on.
Counted(s) == IF AckBeforeHandshake THEN conn[s] /= "none" ELSE conn[s] = "transfer"

\* The set a confirm must wait for: AutoSwitchHAService.getSyncStateSet, the union of the
\* local set and the controller's while a change is being published (equal otherwise).
\* ConfirmLocalIsr: the local set alone.
ConfirmSet == IF ConfirmLocalIsr THEN isr ELSE isr \cup controller

\* Election order (DefaultElectPolicy): the newest last epoch, then the longest log.
Newer(a, b) ==
    \/ LastEpoch(epochs[a]) > LastEpoch(epochs[b])
    \/ LastEpoch(epochs[a]) = LastEpoch(epochs[b]) /\ Len(log[a]) > Len(log[b])

\* The candidates: live (not down, not the master: there is none) members of the
\* controller's set, not in the middle of a truncation (the slave's HA client finishes its
\* local truncation before the broker changes role).
Eligible == {r \in controller : role[r] = "slave" /\ cut[r] = NoCut}

\* The live members the candidate must be at least as up to date as: the eligible ones and
\* those in the middle of a truncation, which finish it (a local step) before anyone less up
\* to date is elected. (Comparing with the eligible ones only, TLC found a confirmed entry
\* lost: a slave that held it was mid-way through the truncation of a reconnection when the
\* master crashed, and the crashed master, which had not synced it, was elected.)
InSync == {r \in controller : role[r] = "slave"}

Perms == Permutations(Replicas)

-----------------------------------------------------------------------------

TypeOK ==
    /\ log \in [Replicas -> Seq(Epochs)]
    /\ \A r \in Replicas : Len(log[r]) <= MaxLen
    /\ synced \in [Replicas -> Offsets]
    /\ \A r \in Replicas : synced[r] <= Len(log[r])
    /\ epochs \in [Replicas -> Seq(Epochs \X Offsets)]
    /\ role \in [Replicas -> Roles]
    /\ conn \in [Replicas -> Phases]
    /\ cut \in [Replicas -> Offsets \cup {NoCut}]
    /\ ack \in [Replicas -> Offsets]
    /\ isr \subseteq Replicas /\ controller \subseteq Replicas
    /\ epoch \in Epochs
    /\ confirmed \in Offsets /\ confirmedLog \in Seq(Epochs) /\ Len(confirmedLog) = confirmed
    /\ crashes \in 0 .. MaxCrashes /\ elections \in 0 .. MaxElections
    /\ demotes \in 0 .. MaxDemotes
    /\ disconnects \in 0 .. MaxDisconnects
    \* at most one master; only a live master has connections and an in-sync set
    /\ \A a, b \in Replicas : role[a] = "master" /\ role[b] = "master" => a = b
    /\ HasMaster => TheMaster \in isr /\ conn[TheMaster] = "none"
    /\ ~HasMaster => isr = {} /\ \A r \in Replicas : conn[r] = "none" /\ ack[r] = 0
    /\ \A r \in Replicas : role[r] = "down" => conn[r] = "none" /\ cut[r] = NoCut

\* One master (any replica: the replicas are interchangeable, SYMMETRY), in epoch 1 with an
\* empty log; the other brokers are slaves, not connected, with empty logs and epoch files.
Init ==
    \E r0 \in Replicas :
        /\ log = [r \in Replicas |-> <<>>]
        /\ synced = [r \in Replicas |-> 0]
        /\ epochs = [r \in Replicas |-> IF r = r0 THEN << <<1, 0>> >> ELSE <<>>]
        /\ role = [r \in Replicas |-> IF r = r0 THEN "master" ELSE "slave"]
        /\ conn = [r \in Replicas |-> "none"]
        /\ cut = [r \in Replicas |-> NoCut]
        /\ ack = [r \in Replicas |-> 0]
        /\ isr = {r0} /\ controller = {r0}
        /\ epoch = 1
        /\ confirmed = 0 /\ confirmedLog = <<>>
        /\ crashes = 0 /\ elections = 0 /\ demotes = 0 /\ disconnects = 0

-----------------------------------------------------------------------------
(* The master *)

\* The master appends one entry, written in its current epoch (the last entry of its epoch
\* file). Upstream: CommitLog.putMessage on the master. (Named AppendEntry: Append is the
\* Sequences operator.)
AppendEntry(m) ==
    /\ role[m] = "master" /\ Len(log[m]) < MaxLen
    /\ log' = [log EXCEPT ![m] = Append(@, LastEpoch(epochs[m]))]
    /\ UNCHANGED <<synced, epochs, role, conn, cut, ack, isr, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

\* Any live broker syncs its log (CommitLog::flush; upstream's flush service). Nothing else
\* makes bytes durable, except an election (Elect) and the truncations (which only shorten).
Flush(r) ==
    /\ role[r] /= "down" /\ synced[r] < Len(log[r])
    /\ synced' = [synced EXCEPT ![r] = Len(log[r])]
    /\ UNCHANGED <<log, epochs, role, conn, cut, ack, isr, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

\* The master reads slave s's offset report (AutoSwitchHAConnection's reader): the ack is the
\* slave's max offset, and s joins the local in-sync set when the report is at least the
\* confirmed offset and at least the start of the master's current epoch
\* (AutoSwitchHAService.maybeExpandInSyncStateSet; upstream compares with the master's own
\* confirm offset, here the last offset any master confirmed, which a new master's log
\* holds). The change is published by Publish. The epoch-start clause is not needed for
\* any invariant here (without it Replication.cfg passes too): a confirm waits for the ack
\* of every member anyway.
\* The slave's report and its reading are one step: the report is the slave's max offset at
\* that moment, and a report read later only lags, which the model has as an Ack that comes
\* later.
Ack(s) ==
    /\ HasMaster /\ role[s] = "slave" /\ Counted(s)
    /\ LET m   == TheMaster
           a   == Len(log[s])
           add == s \notin isr /\ a >= confirmed /\ a >= LastStart(epochs[m])
       IN  /\ ack[s] /= a \/ add
           /\ ack' = [ack EXCEPT ![s] = a]
           /\ isr' = IF add THEN isr \cup {s} ELSE isr
    /\ UNCHANGED <<log, synced, epochs, role, conn, cut, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

\* The master drops a slave from its in-sync set: it is not connected (not yet reported) or
\* its ack is behind the master's max offset, and haMaxTimeSlaveNotCatchup expired (time is
\* not modelled: any such slave may be dropped at any moment).
ShrinkIsr(s) ==
    /\ HasMaster /\ s \in isr \ {TheMaster}
    /\ conn[s] /= "transfer" \/ ack[s] < Len(log[TheMaster])
    /\ isr' = isr \ {s}
    /\ UNCHANGED <<log, synced, epochs, role, conn, cut, ack, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

\* The controller applies the master's AlterSyncStateSet (ReplicasManager's report; the
\* controller accepts it from the master of the current epoch only, which a live master
\* is). A separate step: until it happens, the controller holds the old set; a confirm waits
\* for the union of the two (ConfirmSet) and counts MinInSync over the controller's
\* (Confirm). A change that takes the set below MinInSync by dropping a member is sent only
\* after the master has synced its log (merged: the sync comes first, and a crash between
\* the two publishes nothing): the members dropped may have been the only other holders of
\* what was confirmed. ShrinkUnsynced: publish without that sync.
ShrinkNeedsSync == ~(controller \subseteq isr) /\ Cardinality(isr) < MinInSync

Publish(m) ==
    /\ role[m] = "master" /\ controller /= isr
    /\ controller' = isr
    /\ synced' = IF ShrinkNeedsSync /\ ~ShrinkUnsynced
                   THEN [synced EXCEPT ![m] = Len(log[m])] ELSE synced
    /\ UNCHANGED <<log, epochs, role, conn, cut, ack, isr, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

\* The master reports an offset as replicated (AutoSwitchHAService.computeConfirmOffset; the
\* Rust's wait_for_replication): the lowest ack over ConfirmSet without the master, capped
\* by its own max offset (bytes it has not synced count). Every member of ConfirmSet must be
\* counted (a member without a connection blocks the confirm, as computeConfirmOffset
\* returns the old value then), and the controller's set must have MinInSync members
\* (minInSyncReplicas; with 1 a lone master confirms its own unsynced bytes): the set an
\* election will use, not the local one, which may hold a member the controller does not
\* know yet. CountLocalIsr: MinInSync counted over ConfirmSet (upstream counts
\* getSyncStateSet). Only a raise is a step.
Confirm(m) ==
    /\ role[m] = "master"
    /\ Cardinality(IF CountLocalIsr THEN ConfirmSet ELSE controller) >= MinInSync
    /\ \A s \in ConfirmSet \ {m} : Counted(s)
    /\ LET c == MinOf({ack[s] : s \in ConfirmSet \ {m}} \cup {Len(log[m])})
       IN  /\ c > confirmed
           /\ confirmed' = c
           /\ confirmedLog' = SubSeq(log[m], 1, c)
    /\ UNCHANGED <<log, synced, epochs, role, conn, cut, ack, isr, controller, epoch,
                   crashes, elections, demotes, disconnects>>

-----------------------------------------------------------------------------
(* A slave: connect, handshake (truncate the log, then the epoch file), report, transfer *)

\* The slave's HA client connects to the live master (conn "handshake"). The master answers
\* with its epoch entries and its max offset. Merged into the first truncation step, which
\* reads them: the master's epoch file does not change while it is master and its max
\* offset only grows, so an earlier read gives a point no larger, which only cuts more of a
\* common prefix; the slave fetches it again.
Connect(s) ==
    /\ HasMaster /\ role[s] = "slave" /\ conn[s] = "none" /\ cut[s] = NoCut
    /\ conn' = [conn EXCEPT ![s] = "handshake"]
    /\ UNCHANGED <<log, synced, epochs, role, cut, ack, isr, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

\* The slave's connection to the live master drops (a partition, a timeout, either side closing
\* it; the Rust's HA slave reconnects with backoff): the slave keeps its log and its truncation
\* goes on if one is half done (a local step); the master forgets the slave's ack. Its in-sync
\* membership stays until ShrinkIsr (which a slave not in TRANSFER allows). The next Connect is
\* a new handshake.
Disconnect(s) ==
    /\ HasMaster /\ role[s] = "slave" /\ conn[s] /= "none" /\ disconnects < MaxDisconnects
    /\ conn' = [conn EXCEPT ![s] = "none"]
    /\ ack' = [ack EXCEPT ![s] = 0]
    /\ disconnects' = disconnects + 1
    /\ UNCHANGED <<log, synced, epochs, role, cut, isr, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes>>

CutLog(s, p)    == /\ log' = [log EXCEPT ![s] = SubSeq(@, 1, p)]
                   /\ synced' = [synced EXCEPT ![s] = Min(@, p)]
CutEpochs(s, p) == epochs' = [epochs EXCEPT ![s] = KeepBelow(@, p)]

\* The two halves of AutoSwitchHAClient.doTruncate, split so that a crash can fall between
\* them. The first computes the consistent point against the master's epoch entries and max
\* offset and does its cut; the second does the other cut and ends the handshake (a local
\* step: it runs even if the master is gone meanwhile).
\* TruncateLog: messageStore.truncateFiles(point): the log keeps offsets below the point
\* (and a cut below the synced offset lowers it). First, unless EpochsFirst.
TruncateLog(s) ==
    /\ \/ /\ ~EpochsFirst
          /\ HasMaster /\ role[s] = "slave" /\ conn[s] = "handshake" /\ cut[s] = NoCut
          /\ LET p == PointFor(s, TheMaster)
             IN  CutLog(s, p) /\ cut' = [cut EXCEPT ![s] = p]
          /\ UNCHANGED <<epochs, conn>>
       \/ /\ EpochsFirst
          /\ cut[s] /= NoCut
          /\ CutLog(s, cut[s])
          /\ cut' = [cut EXCEPT ![s] = NoCut]
          /\ conn' = [conn EXCEPT ![s] = IF @ = "handshake" THEN "truncated" ELSE @]
          /\ UNCHANGED epochs
    /\ UNCHANGED <<role, ack, isr, controller, epoch, confirmed, confirmedLog, crashes,
                   elections, demotes, disconnects>>

\* TruncateEpochs: epochCache.truncateSuffixByOffset(point): drop the entries that start at
\* or after the point. The last kept entry's epoch covers the log up to the point; if the
\* master's next entries are of a newer epoch, the transfer frame that brings the first of
\* them also brings its epoch entry (Transfer). Second, unless EpochsFirst.
TruncateEpochs(s) ==
    /\ \/ /\ ~EpochsFirst
          /\ cut[s] /= NoCut
          /\ CutEpochs(s, cut[s])
          /\ cut' = [cut EXCEPT ![s] = NoCut]
          /\ conn' = [conn EXCEPT ![s] = IF @ = "handshake" THEN "truncated" ELSE @]
          /\ UNCHANGED <<log, synced>>
       \/ /\ EpochsFirst
          /\ HasMaster /\ role[s] = "slave" /\ conn[s] = "handshake" /\ cut[s] = NoCut
          /\ LET p == PointFor(s, TheMaster)
             IN  CutEpochs(s, p) /\ cut' = [cut EXCEPT ![s] = p]
          /\ UNCHANGED <<log, synced, conn>>
    /\ UNCHANGED <<role, ack, isr, controller, epoch, confirmed, confirmedLog, crashes,
                   elections, demotes, disconnects>>

\* The slave reports its max offset (after the truncation: the point, unless SkipTruncation)
\* and the connection moves to TRANSFER; the master sets its ack from it. Joining the
\* in-sync set is Ack's (a later report).
ReportOffset(s) ==
    /\ HasMaster /\ role[s] = "slave" /\ conn[s] = "truncated"
    /\ conn' = [conn EXCEPT ![s] = "transfer"]
    /\ ack' = [ack EXCEPT ![s] = Len(log[s])]
    /\ UNCHANGED <<log, synced, epochs, role, cut, isr, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

\* The master sends the entry at the slave's max offset (AutoSwitchHAConnection's writer;
\* the slave appends it with CommitLog::append_raw at its max offset). The frame carries
\* the entry's epoch e and e's start in the master's epoch file; if e is not the slave's
\* last epoch, the slave first appends <<e, start>> to its epoch file (fsync), then the
\* entry. Upstream caps a frame at the end of its epoch, so a frame never crosses an epoch
\* boundary; one entry per frame makes that automatic here.
Transfer(s) ==
    /\ HasMaster /\ role[s] = "slave" /\ conn[s] = "transfer"
    /\ LET m == TheMaster
           k == Len(log[s]) + 1
       IN  /\ k <= Len(log[m])
           /\ LET e == log[m][k]
              IN  /\ epochs' =
                        IF LastEpoch(epochs[s]) = e THEN epochs
                        ELSE [epochs EXCEPT ![s] = Append(@, <<e, StartOf(epochs[m], e)>>)]
                  /\ log' = [log EXCEPT ![s] = Append(@, e)]
    /\ UNCHANGED <<synced, role, conn, cut, ack, isr, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

-----------------------------------------------------------------------------
(* Crashes, restarts, elections, demotion *)

\* The master is gone: every connection to it drops, its in-sync set with it.
NoConnections == /\ conn' = [r \in Replicas |-> "none"]
                 /\ ack' = [r \in Replicas |-> 0]
                 /\ isr' = {}

\* A broker crashes: its log keeps the synced prefix only; its epoch file (durable) drops the
\* entries that start beyond the synced offset (the model's recovery rule: the epoch file is
\* checked against the commit log when the broker starts). Sound, because those entries
\* describe no byte that survived: an entry <<e, s>> with s > synced covers offsets from s
\* on, all lost. An entry with s = synced is kept: an epoch with no entry yet, as a newly
\* elected master's. Without the rule the file would hold epochs that end (at the log's max
\* offset) before they start, against EpochsWellFormed, and later appends would go below
\* them. (Both without the rule and with a rule that drops s = synced too, SlaveIsPrefix and
\* NoConfirmedLost still hold at Replication.cfg's bounds: the next truncation point or
\* election cuts the file at most at the log's max offset anyway. The rule is hygiene that
\* the epoch file's invariants need, not a safety net.) A truncation half done is dropped;
\* the next handshake computes the point again. A crashing master takes its connections
\* with it; a crashing slave's connection drops (the master forgets its ack; its in-sync
\* membership stays until ShrinkIsr).
Crash(r) ==
    /\ role[r] /= "down" /\ crashes < MaxCrashes
    /\ log' = [log EXCEPT ![r] = SubSeq(@, 1, synced[r])]
    /\ epochs' = [epochs EXCEPT ![r] = KeepBelow(@, synced[r] + 1)]
    /\ role' = [role EXCEPT ![r] = "down"]
    /\ cut' = [cut EXCEPT ![r] = NoCut]
    /\ crashes' = crashes + 1
    /\ IF role[r] = "master"
         THEN NoConnections
         ELSE /\ conn' = [conn EXCEPT ![r] = "none"]
              /\ ack' = [ack EXCEPT ![r] = 0]
              /\ UNCHANGED isr
    /\ UNCHANGED <<synced, controller, epoch, confirmed, confirmedLog, elections, demotes, disconnects>>

\* A crashed broker starts again, as a slave (the controller tells it who is master).
Restart(r) ==
    /\ role[r] = "down"
    /\ role' = [role EXCEPT ![r] = "slave"]
    /\ UNCHANGED <<log, synced, epochs, conn, cut, ack, isr, controller, epoch, confirmed,
                   confirmedLog, crashes, elections, demotes, disconnects>>

\* No live master: the controller elects r from its in-sync set (ReplicasInfoManager.
\* electMaster): a live slave, the most up-to-date of them by (last epoch, max offset)
\* (DefaultElectPolicy; ElectAnyInSync: any of them). The epoch is the controller's next.
\* r syncs its log, truncates its epoch file at its max offset (an epoch with no entry at
\* the end, from an earlier election of r, would otherwise have the new epoch's start:
\* EpochFileCache.appendEntry refuses a start that is not above the last one's), appends
\* <<epoch, max offset>> (fsync), and becomes master. The new in-sync set is r alone, at
\* the controller too, in the same step (the election writes it). The sync is needed: with
\* the set at r alone, r is the one holder of what was confirmed that a later election can
\* pick (without it, TLC: a confirm, a demotion, a tie won by the slave that acknowledged
\* the entry in memory, its crash, and its re-election lose the entry).
Elect(r) ==
    /\ ~HasMaster /\ elections < MaxElections
    /\ r \in Eligible
    /\ ElectAnyInSync \/ \A o \in InSync : ~Newer(o, r)
    /\ synced' = [synced EXCEPT ![r] = Len(log[r])]
    /\ epochs' = [epochs EXCEPT ![r] = Append(KeepBelow(@, Len(log[r])),
                                              <<epoch + 1, Len(log[r])>>)]
    /\ epoch' = epoch + 1
    /\ role' = [role EXCEPT ![r] = "master"]
    /\ isr' = {r} /\ controller' = {r}
    /\ elections' = elections + 1
    /\ UNCHANGED <<log, conn, cut, ack, confirmed, confirmedLog, crashes, demotes, disconnects>>

\* An operator demotes the live master (the Rust's admin demote; upstream: an election the
\* admin asks for). It stays up as a slave with its log as it is (nothing is lost: it did not
\* crash); its connections drop.
Demote(m) ==
    /\ role[m] = "master" /\ demotes < MaxDemotes
    /\ role' = [role EXCEPT ![m] = "slave"]
    /\ NoConnections
    /\ demotes' = demotes + 1
    /\ UNCHANGED <<log, synced, epochs, cut, controller, epoch, confirmed, confirmedLog,
                   crashes, elections, disconnects>>

-----------------------------------------------------------------------------

\* Everything has settled and the bounds are used up: the only states allowed to stutter,
\* so that TLC's deadlock check reports any other state without a successor. With a master:
\* its log is full, every other broker is a connected slave with the same log, reported,
\* in sync (locally and at the controller), everything is synced and confirmed. Without one:
\* no election left, every broker up and synced, no truncation half done.
Terminal ==
    /\ crashes = MaxCrashes
    /\ \A r \in Replicas : role[r] /= "down" /\ synced[r] = Len(log[r]) /\ cut[r] = NoCut
    /\ IF HasMaster
         THEN LET m == TheMaster IN
              /\ demotes = MaxDemotes
              /\ Len(log[m]) = MaxLen
              /\ \A s \in Replicas \ {m} :
                    conn[s] = "transfer" /\ log[s] = log[m] /\ ack[s] = Len(log[m])
              /\ isr = Replicas /\ controller = Replicas
              /\ confirmed = Len(log[m])
         ELSE elections = MaxElections

Next ==
    \/ \E r \in Replicas :
         \/ AppendEntry(r) \/ Flush(r) \/ Ack(r) \/ ShrinkIsr(r) \/ Publish(r) \/ Confirm(r)
         \/ Connect(r) \/ Disconnect(r) \/ TruncateLog(r) \/ TruncateEpochs(r) \/ ReportOffset(r)
         \/ Transfer(r)
         \/ Crash(r) \/ Restart(r) \/ Elect(r) \/ Demote(r)
    \/ (Terminal /\ UNCHANGED vars)

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
(* Invariants *)

\* A slave in TRANSFER holds a prefix of the master's log (as values).
SlaveIsPrefix ==
    HasMaster =>
        \A s \in Replicas : role[s] = "slave" /\ conn[s] = "transfer" =>
            IsPrefix(log[s], log[TheMaster])

\* No confirmed offset is lost: whatever master is live holds what was confirmed, across
\* crashes, elections and demotions.
NoConfirmedLost ==
    HasMaster => IsPrefix(confirmedLog, log[TheMaster])

\* Every epoch file strictly increases in epoch and in start, starts at 0 when the log is
\* not empty, and no entry starts beyond the log's max offset (the last may start AT it: an
\* epoch with no entry yet, as a newly elected master's). The one exception is the window
\* between the two truncation steps, where one of the two files is cut and the other not
\* yet: after TruncateLog, entries at or above the point are still there (they start beyond
\* the cut log); after an EpochsFirst cut, the log still holds bytes above the point.
EpochsWellFormed ==
    \A r \in Replicas :
        LET E == epochs[r] IN
        /\ \A i \in 1 .. Len(E) - 1 : E[i][1] < E[i + 1][1] /\ E[i][2] < E[i + 1][2]
        /\ cut[r] = NoCut =>
              /\ Len(log[r]) > 0 => E /= <<>> /\ E[1][2] = 0
              /\ \A i \in 1 .. Len(E) : E[i][2] <= Len(log[r])

\* Outside a truncation, the epoch file says, for every entry of the log, the epoch it was
\* written in: the entry at offset k - 1 is tagged with the epoch of the last file entry
\* that starts at or below k - 1. This is what makes findConsistentPoint right.
EpochsMatchLog ==
    \A r \in Replicas : cut[r] = NoCut =>
        \A k \in 1 .. Len(log[r]) :
            \E i \in 1 .. Len(epochs[r]) :
                /\ epochs[r][i][2] <= k - 1
                /\ i = Len(epochs[r]) \/ epochs[r][i + 1][2] > k - 1
                /\ epochs[r][i][1] = log[r][k]

\* Every ack the master counts is backed by the slave's log: the slave holds the master's
\* log up to that ack. A confirm takes the lowest counted ack, so this is what makes a
\* confirmed offset present on the slaves it waited for.
AckIsHeld ==
    HasMaster =>
        \A s \in Replicas : role[s] = "slave" /\ Counted(s) =>
            /\ ack[s] <= Len(log[s]) /\ ack[s] <= Len(log[TheMaster])
            /\ SubSeq(log[s], 1, ack[s]) = SubSeq(log[TheMaster], 1, ack[s])

\* No epoch file names an epoch the controller has not handed out, and the live master's
\* last entry is the current epoch.
EpochsBounded ==
    /\ \A r \in Replicas : LastEpoch(epochs[r]) <= epoch
    /\ HasMaster => LastEpoch(epochs[TheMaster]) = epoch

=============================================================================
