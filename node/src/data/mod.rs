//! The replicated value types (multi-value register, counter, set, map,
//! LWW register), their merges, and their record formats. Pure: no IO.

pub mod register;
pub mod value;
