//! The connection layer under the HTTP API and the WebSocket channel: who a
//! connection stands for, and the bounds every connection lives within.

pub mod address;

pub use address::ClientKey;
