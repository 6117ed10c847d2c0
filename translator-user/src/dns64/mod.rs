//! Embedded DNS64 server (RFC 6147). Owned by the DNS64 work; see the module docs once written.
