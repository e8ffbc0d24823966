//! A client channel's liveness inside `Running`: active -> idle -> expired, as a statig machine.
//!
//! Upstream closes a connection that was silent for `serverChannelMaxIdleTimeSeconds` (120 s,
//! Netty `IdleStateHandler`). The transport feeds this machine every valid frame
//! (`handle_heard`) and its timer (`handle_tick`), and closes the connection once it is
//! `Expired`. Pure: time is a parameter; the machine reads no clock and does no IO.
//!
//! ```text
//!   heard ┌────────┐ tick > idle ┌──────┐ tick > expire ┌─────────┐
//!  ┌────▶ │ active │ ──────────▶ │ idle │ ────────────▶ │ expired │ (terminal)
//!  └───── └────────┘ ◀────────── └──────┘               └─────────┘
//!          │             heard                              ▲
//!          └────────────── tick > expire ───────────────────┘
//! ```

use super::Millis;
use statig::prelude::*;

/// Inputs of the liveness machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityEvent {
    /// A valid frame arrived at this time.
    Heard(Millis),
    /// The timer fired at this time.
    Tick(Millis),
}

mod machine {
    //! The statig machine itself; private so its generated `State` enum stays an implementation
    //! detail behind [`super::Liveness`].
    #![allow(missing_docs, unreachable_pub)]
    use super::{ActivityEvent, Millis};
    use statig::prelude::*;

    /// Timing rules and the last time the peer was heard.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Activity {
        pub(super) last_heard: Millis,
        pub(super) idle_after_ms: u64,
        pub(super) expire_after_ms: u64,
    }

    #[state_machine(
        initial = "State::active()",
        state(derive(Debug, Clone, Copy, PartialEq, Eq))
    )]
    impl Activity {
        #[state]
        fn active(&mut self, event: &ActivityEvent) -> Outcome<State> {
            match *event {
                ActivityEvent::Heard(now) => {
                    self.heard(now);
                    Handled
                }
                ActivityEvent::Tick(now) if self.silent(now) > self.expire_after_ms => {
                    Transition(State::expired())
                }
                ActivityEvent::Tick(now) if self.silent(now) > self.idle_after_ms => {
                    Transition(State::idle())
                }
                ActivityEvent::Tick(_) => Handled,
            }
        }

        #[state]
        fn idle(&mut self, event: &ActivityEvent) -> Outcome<State> {
            match *event {
                ActivityEvent::Heard(now) => {
                    self.heard(now);
                    Transition(State::active())
                }
                ActivityEvent::Tick(now) if self.silent(now) > self.expire_after_ms => {
                    Transition(State::expired())
                }
                ActivityEvent::Tick(_) => Handled,
            }
        }

        #[state]
        fn expired(event: &ActivityEvent) -> Outcome<State> {
            // Terminal: a frame that races the close cannot revive the channel.
            let _ = event;
            Handled
        }
    }

    impl Activity {
        fn heard(&mut self, now: Millis) {
            self.last_heard = self.last_heard.max(now);
        }

        fn silent(&self, now: Millis) -> u64 {
            now.since(self.last_heard)
        }
    }
}

use machine::{Activity, State};

/// The liveness of one channel, driven with `handle_*` and read with `state` / `poll_timeout`.
pub struct ChannelActivity {
    machine: StateMachine<Activity>,
}

impl std::fmt::Debug for ChannelActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelActivity")
            .field("state", &self.state())
            .finish()
    }
}

/// The observable liveness states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Heard within `idle_after_ms`.
    Active,
    /// Silent for longer than `idle_after_ms`.
    Idle,
    /// Silent for longer than `expire_after_ms`: close the connection.
    Expired,
}

impl ChannelActivity {
    /// A channel heard at `now` (its accept time).
    pub fn new(now: Millis, idle_after_ms: u64, expire_after_ms: u64) -> Self {
        let expire_after_ms = expire_after_ms.max(idle_after_ms);
        ChannelActivity {
            machine: Activity {
                last_heard: now,
                idle_after_ms,
                expire_after_ms,
            }
            .state_machine(),
        }
    }

    /// A valid frame arrived.
    pub fn handle_heard(&mut self, now: Millis) {
        self.machine.handle(&ActivityEvent::Heard(now));
    }

    /// The timer fired.
    pub fn handle_tick(&mut self, now: Millis) {
        self.machine.handle(&ActivityEvent::Tick(now));
    }

    /// The current liveness.
    pub fn state(&self) -> Liveness {
        match self.machine.state() {
            State::Active {} => Liveness::Active,
            State::Idle {} => Liveness::Idle,
            State::Expired {} => Liveness::Expired,
        }
    }

    /// When the next tick can change the state; `None` once expired.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let a = self.machine.inner();
        match self.state() {
            Liveness::Active => Some(Millis(a.last_heard.0 + a.idle_after_ms + 1)),
            Liveness::Idle => Some(Millis(a.last_heard.0 + a.expire_after_ms + 1)),
            Liveness::Expired => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_idle_then_expires_and_stays_expired() {
        let mut a = ChannelActivity::new(Millis(0), 10, 30);
        a.handle_tick(Millis(10));
        assert_eq!(a.state(), Liveness::Active);
        assert_eq!(a.poll_timeout(), Some(Millis(11)));
        a.handle_tick(Millis(11));
        assert_eq!(a.state(), Liveness::Idle);
        a.handle_heard(Millis(12));
        assert_eq!(a.state(), Liveness::Active);
        a.handle_tick(Millis(43));
        assert_eq!(a.state(), Liveness::Expired, "a long silence skips idle");
        a.handle_heard(Millis(44));
        assert_eq!(a.state(), Liveness::Expired);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_clock_step_backwards_expires_nothing() {
        let mut a = ChannelActivity::new(Millis(1_000), 10, 30);
        a.handle_heard(Millis(5));
        a.handle_tick(Millis(500));
        assert_eq!(a.state(), Liveness::Active);
    }
}
