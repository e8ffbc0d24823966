//! Typestate markers shared by every lifecycle handle: `Init -> Registered -> Running -> Closed`.
//!
//! The markers carry no data; each handle (`ClientChannel<P>`, `HaConnection<P>`) maps a
//! marker to the data that phase owns. `Phase` is sealed so that no phase can be added outside
//! this crate, which is what makes "`spawn` only exists on `Registered`" a compile-time fact.

mod sealed {
    pub trait Sealed {}
}

/// A lifecycle phase. Sealed: only the four markers below implement it.
pub trait Phase: sealed::Sealed + Send + 'static {
    /// The phase's name, for tracing and error messages.
    const NAME: &'static str;
}

macro_rules! phases {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {}
        impl sealed::Sealed for $name {}
        impl Phase for $name {
            const NAME: &'static str = stringify!($name);
        }
    )*};
}

phases! {
    /// Accepted, not yet in any table: nothing to undo if it is dropped.
    Init,
    /// In its table, behind an RAII guard; its tasks are not started yet.
    Registered,
    /// Its tasks run; the table entry is removed on every exit path.
    Running,
    /// Removed from its table; no operation is available.
    Closed,
}
