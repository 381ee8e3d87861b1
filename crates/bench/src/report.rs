//! Report cards moved to `advsoup_eval::report`; this re-export keeps the old path working (a
//! shim to remove once every caller imports `advsoup_eval::report`).

pub use advsoup_eval::report::*;
