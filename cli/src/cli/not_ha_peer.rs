//! A slave pointed at a port that is not an HA port (`serve`'s client port, its metrics port)
//! only shows the library's retry warning, whose reason ("master closed the connection", "a
//! transfer body of 540291120 bytes") does not say that the address is wrong. This layer reads
//! those warnings and, once per process, says what the operator most likely got wrong.
//!
//! It reads the library's words, so `cli/tests/cli_serve.rs` runs a slave against both ports
//! and fails if the hint stops appearing.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Where the slave's retry warning comes from, and its message.
const TARGET: &str = "rmq_lifecycle::net::ha";
const RETRYING: &str = "HA slave not replicating; retrying";

/// Sessions in a row that the peer closed with nothing replicated before the hint names the
/// address (the library warns on the first and every tenth): one close is a restarting master,
/// ten are a port that hangs up on the HA protocol.
const CLOSES_IN_A_ROW: u64 = 10;

/// The layer, to be installed with [`NotHaPeer::filter`].
#[derive(Debug, Default)]
pub(crate) struct NotHaPeer {
    hinted: AtomicBool,
}

impl NotHaPeer {
    /// Only the HA module's warnings: the layer leaves every other callsite disabled.
    pub(crate) fn filter() -> tracing_subscriber::filter::Targets {
        tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::WARN)
    }
}

/// The retry warning's fields.
#[derive(Default)]
struct Retry {
    message: String,
    master: String,
    why: String,
    attempts: u64,
}

impl Visit for Retry {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "master" => self.master = text,
            "why" => self.why = text,
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "attempts" {
            self.attempts = value;
        }
    }
}

/// What in a retry reason shows the peer does not speak the HA protocol, if anything does.
fn not_ha(retry: &Retry) -> Option<String> {
    // An HA transfer's size field is at most a few MiB; text (an HTTP answer) read as one is
    // hundreds of millions.
    if retry.why.starts_with("protocol error: transfer body of") {
        return Some(format!(
            "it answered with bytes that are not an HA transfer ({})",
            retry.why
        ));
    }
    if retry.why == "master closed the connection" && retry.attempts >= CLOSES_IN_A_ROW {
        return Some(format!(
            "it closed {} connections in a row with nothing replicated",
            retry.attempts
        ));
    }
    None
}

impl<S: Subscriber> Layer<S> for NotHaPeer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut retry = Retry::default();
        event.record(&mut retry);
        if retry.message != RETRYING {
            return;
        }
        let Some(what) = not_ha(&retry) else {
            return;
        };
        if self.hinted.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            master = %retry.master,
            "HA slave: the peer does not speak the HA protocol: {what}; --master must be the \
             master's HA port (serve --ha-listen, 10912 by default), not its client port \
             (--listen) or its metrics port"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(why: &str, attempts: u64) -> Retry {
        Retry {
            message: RETRYING.into(),
            master: "127.0.0.1:10911".into(),
            why: why.into(),
            attempts,
        }
    }

    /// Only what a real HA master never does names the address: one close may be a restart,
    /// and a master whose log the slave cannot follow says so in its own words.
    #[test]
    fn only_a_peer_that_cannot_be_an_ha_master_is_named() {
        assert!(not_ha(&retry("master closed the connection", 1)).is_none());
        assert!(not_ha(&retry("master closed the connection", 10)).is_some());
        let http = "protocol error: transfer body of 540291120 bytes exceeds 4194304";
        assert!(not_ha(&retry(http, 1)).is_some());
        let diverged = "protocol error: the master's log ends at 0, before this slave's end at 8";
        assert!(not_ha(&retry(diverged, 10)).is_none());
        assert!(not_ha(&retry("connect to 127.0.0.1:1: Connection refused", 10)).is_none());
    }
}
