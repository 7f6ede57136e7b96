//! The authoritative server's request handler. Every request passes
//! [`warren_dns::screen`] before hickory's catalog sees it: one question of
//! class IN, no ANY, no zone transfers or updates, and only names inside
//! our zones (REFUSED elsewhere: never a resolver for anyone). UDP answers
//! are capped at [`MAX_UDP_PAYLOAD`] bytes and truncated (TC) beyond it.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use hickory_server::net::runtime::Time;
use hickory_server::proto::rr::LowerName;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::Catalog;
use warren_dns::{refuse, screen, SmallUdp};

pub use warren_dns::{answer_bytes, MAX_UDP_PAYLOAD};

/// The zones served, swapped whole when one of them changes.
#[derive(Default)]
pub struct Zones {
    catalog: Catalog,
    origins: HashSet<LowerName>,
}

impl Zones {
    /// Adds a zone handler under its origin.
    pub fn insert(
        &mut self,
        origin: LowerName,
        handler: Arc<dyn hickory_server::zone_handler::ZoneHandler>,
    ) {
        self.origins.insert(origin.clone());
        self.catalog.upsert(origin, vec![handler]);
    }

    /// True if `name` is inside one of the zones.
    pub fn serves(&self, name: &LowerName) -> bool {
        let mut name = name.clone();
        loop {
            if self.origins.contains(&name) {
                return true;
            }
            if name.is_root() {
                return false;
            }
            name = name.base_name();
        }
    }

    /// True if exactly this origin is a zone already.
    pub fn has_origin(&self, origin: &LowerName) -> bool {
        self.origins.contains(origin)
    }

    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}

/// The controller's handler: the screen, then the catalog of all zones.
/// Clones share the zones, so the server and the zone builder hold one each.
#[derive(Clone, Default)]
pub struct AuthoritativeHandler {
    zones: Arc<RwLock<Arc<Zones>>>,
}

impl AuthoritativeHandler {
    pub fn replace(&self, zones: Zones) {
        *self.zones.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(zones);
    }

    fn current(&self) -> Arc<Zones> {
        self.zones.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl RequestHandler for AuthoritativeHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let zones = self.current();
        let response_handle = SmallUdp(response_handle);
        match screen(request, |name| zones.serves(name).then_some(())) {
            Ok(()) => {
                zones
                    .catalog
                    .handle_request::<_, T>(request, response_handle)
                    .await
            }
            Err(code) => refuse(request, code, response_handle).await,
        }
    }
}
