//! `crd`: prints the StellarNode CustomResourceDefinition the injector reads
//! ([`crate::crd`]), for clusters without the operator's own.

use crate::error::Error;

pub fn main() -> Result<(), Error> {
    print!("{}", crate::crd::crd_yaml().map_err(Error::Crd)?);
    Ok(())
}
