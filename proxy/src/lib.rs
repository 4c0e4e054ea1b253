//! proxy

pub mod sim;
