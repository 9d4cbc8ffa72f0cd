//! zkit-testkit
