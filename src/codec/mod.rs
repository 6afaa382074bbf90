//! codec: the driver
