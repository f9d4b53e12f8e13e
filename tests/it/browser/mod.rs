//! Real browsers on every page a member sees.
//!
//! - `onion`: Firefox ESR as Tor Browser (`support::torbrowser`), at the Safest and the
//!   Standard security level, two members making every journey (`journey`) over the
//!   private Tor network, with the onion door's `__Host-` cookies; screenshots of every
//!   page; what the tab shows while a chat page's live frame streams.
//! - `a11y`: the same journey in Chromium with axe-core on every page.
//! - `frame`: the live frame's first document, over HTTP.
//! - `safest`: what Tor Browser's Safest level turns off is not needed, over HTTP.

mod a11y;
mod frame;
mod journey;
mod observe;
mod onion;
mod page;
mod safest;
