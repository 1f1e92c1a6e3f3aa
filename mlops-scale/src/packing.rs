//! GPU packing: placeholder replaced below.
