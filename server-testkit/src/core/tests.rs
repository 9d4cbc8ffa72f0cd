//! Core unit tests driven through frames, without sockets.
