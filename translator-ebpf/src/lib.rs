#![no_std]
// This file exists so that `translator-user` can name this crate as a build dependency (cargo then
// rebuilds the eBPF object when its sources change). The program itself is `src/main.rs`.
