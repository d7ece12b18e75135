//! Request routing: which configured route answers a request.
//!
//! The route table is compiled once per configuration ([`Router::build`]) and then only read: a
//! request normalises its path ([`normalize_path`]), asks [`Router::lookup`], and, when forwarding,
//! rewrites the path ([`Rewrite::apply`]). Everything here is synchronous and pure, so it is tested
//! exhaustively with unit tests; lookup does not allocate in the common case.
//!
//! # Precedence
//!
//! A lookup walks candidates in this order and returns the first whose method, header and query
//! conditions all hold:
//!
//! 1. **Host tier.** Routes listing the request's host exactly; then routes listing a wildcard
//!    `*.example.com` (one extra, non-empty label: `a.example.com` matches, `a.b.example.com` and
//!    `example.com` do not; as a wildcard covers exactly one label, at most one wildcard can match
//!    a host, which trivially makes the longest one win); then routes without hosts. Hosts are
//!    compared lowercased, and a trailing dot is ignored. When nothing in a tier matches fully,
//!    the next tier is tried.
//! 2. **Path class**, within a tier:
//!    1. exact paths (templates without parameters);
//!    2. templates with `{param}` segments, more literal segments first, then fewer parameters,
//!       then the file order of the first route using that template;
//!    3. prefixes, longest first. `/v1` matches `/v1` and `/v1/…`, not `/v1beta`. A prefix with a
//!       trailing slash, `/docs/`, matches `/docs/` and `/docs/…` but **not** `/docs` (configure
//!       `/docs` to get all three); `/` matches everything;
//!    4. templates ending in a catch-all `{*rest}`, ranked like templates. A catch-all matches a
//!       non-empty remainder only: `/files/{*rest}` matches `/files/a` and `/files/a/b`, not
//!       `/files/` or `/files`.
//!
//!    A path that matches a class whose candidates all fail their conditions falls through to
//!    the next matching template, prefix or class: `/users/{id}` requiring a header loses a
//!    request without it to the prefix `/users`.
//! 3. **Candidates of one path match**: more header + query conditions first, then file order.
//!
//! A candidate matches when its method list is empty or contains the method (`HEAD` is not
//! implied by `GET`), every header condition holds (`Equals` compares bytes exactly, any of several
//! same-name headers may match) and every query condition holds (names and values are compared
//! percent-decoded, `+` decodes to a space; `Present` accepts `?a` and `?a=`).
//!
//! When no candidate matches but some candidate failed only on its method, the answer is
//! [`Lookup::MethodNotAllowed`], whose `allow` is the union of those candidates' methods (standard
//! methods in RFC 9110 order, others after them); otherwise [`Lookup::NotFound`].
//!
//! Two templates with the same shape but different parameter names in the same host tier
//! (`/u/{id}` and `/u/{name}`) are a [`BuildError`] at the later route; identical templates share
//! one candidate list.

mod normalize;
mod params;
mod pattern;
mod rewrite;
mod table;

pub use normalize::{PathError, normalize_path};
pub use params::Params;
pub use rewrite::{Rewrite, RewriteError, RewriteTemplate};
pub(crate) use table::FastMap;
pub use table::{BuildError, Lookup, PathPattern, RequestView, RouteSpec, Router, ValueCondition};
