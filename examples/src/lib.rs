//! Shared helpers of the fnhost examples.
