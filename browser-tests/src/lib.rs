//! Browser tests live in `tests/browser/` behind the `browsers` feature; this library is empty.
