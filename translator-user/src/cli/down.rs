use crate::dataplane::{self, Instance};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    if let Ok(state) = inst.read_state()
        && state.controller_running()
    {
        log::warn!(
            "the controller of {:?} (pid {}) is still running; stop it too",
            inst.name,
            state.pid
        );
    }
    if dataplane::down(&inst)? {
        println!(
            "instance {:?}: data plane detached, pins and state removed",
            inst.name
        );
    } else {
        println!("instance {:?}: nothing to remove", inst.name);
    }
    Ok(())
}
