//! Map types, one file each. Each exports `ENTRY`, listed in `crate::map::MAP_TYPES`.

pub mod array;
