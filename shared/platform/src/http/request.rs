//! Request helpers shared by the HTTP services: query parameters, headers, bodies.

use std::borrow::Cow;
use std::io::Read;

use flate2::bufread::GzDecoder;
use http::HeaderMap;

use super::error::AppError;

/// The value of the singular query parameter `name`, percent-decoded. Every route reads its
/// parameters through this, so a repeated one (`s=a&s=b`) is refused naming it, the same way
/// on every route: letting the first (or last) win would answer for a site or user the caller
/// may not have meant.
pub fn query_param<'a>(
    query: Option<&'a str>,
    name: &str,
) -> Result<Option<Cow<'a, str>>, AppError> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut values = form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == name);
    let first = values.next().map(|(_, v)| v);
    let repeats = values.count();
    if repeats > 0 {
        return Err(AppError::invalid(
            name,
            format!(
                "the query parameter is given {} times; give it once",
                repeats + 1
            ),
        ));
    }
    Ok(first)
}

/// Every value of the list query parameter `name`, in order (`exclude=a,b&exclude=c` gives
/// `["a,b", "c"]`): lists may be split over repeats.
pub fn query_param_all<'a>(query: Option<&'a str>, name: &str) -> Vec<Cow<'a, str>> {
    query.map_or_else(Vec::new, |q| {
        form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    })
}

/// The site key from `?s=`, checked against `[a-z0-9_-]{1,64}`.
pub fn site_key_param(query: Option<&str>) -> Result<String, AppError> {
    let s = query_param(query, "s")?
        .ok_or_else(|| AppError::invalid("s", "the site key query parameter is required"))?;
    if !nectar_model::event::is_valid_key(&s) {
        return Err(AppError::invalid("s", "site keys match [a-z0-9_-]{1,64}"));
    }
    Ok(s.into_owned())
}

/// A header's value as text, if present and valid.
pub fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decodes the body according to `Content-Encoding` (identity or gzip), enforcing `limit` on
/// both the raw and the decoded size.
pub fn decode_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, AppError> {
    if body.len() > limit {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let encoding = header(headers, http::header::CONTENT_ENCODING)
        .unwrap_or("identity")
        .trim();
    if encoding.eq_ignore_ascii_case("identity") || encoding.is_empty() {
        return Ok(Cow::Borrowed(body));
    }
    if !encoding.eq_ignore_ascii_case("gzip") && !encoding.eq_ignore_ascii_case("x-gzip") {
        return Err(AppError::UnsupportedMediaType(format!(
            "Content-Encoding {encoding:?} is not supported; use gzip or none"
        )));
    }
    gunzip_members(body, limit).map(Cow::Owned)
}

/// Decodes every gzip member of `body` (RFC 1952 allows several, `cat a.gz b.gz`), refusing
/// bytes after the last member that are not one: a single-member decoder would stop at the
/// first member and silently drop whatever follows.
fn gunzip_members(body: &[u8], limit: usize) -> Result<Vec<u8>, AppError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut rest = body;
    let mut members = 0usize;
    loop {
        let mut member = GzDecoder::new(rest);
        // Read one byte past the limit to tell "exactly the limit" from "over it" (zip bombs
        // stop here).
        let budget = (limit + 1 - out.len()) as u64;
        if let Err(e) = (&mut member).take(budget).read_to_end(&mut out) {
            let problem = if members == 0 {
                format!("the gzip body cannot be decoded: {e}")
            } else {
                format!(
                    "the gzip body has {} bytes after its last member that are not gzip \
                     (trailing garbage)",
                    rest.len()
                )
            };
            return Err(AppError::invalid("body", problem));
        }
        if out.len() > limit {
            return Err(AppError::PayloadTooLarge { limit });
        }
        rest = member.into_inner();
        members += 1;
        if rest.is_empty() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use http::HeaderValue;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param(Some("a=1&s=de%2Dmo"), "s").unwrap().unwrap(),
            "de-mo"
        );
        assert!(query_param(Some("a=1"), "s").unwrap().is_none());
        assert!(query_param(None, "s").unwrap().is_none());
        assert!(matches!(
            site_key_param(Some("s=Demo")),
            Err(AppError::InvalidRequest { .. })
        ));
        assert!(matches!(
            site_key_param(Some("x=1")),
            Err(AppError::InvalidRequest { .. })
        ));
        assert_eq!(site_key_param(Some("s=demo")).unwrap(), "demo");
    }

    #[test]
    fn repeated_singular_parameters_are_refused_naming_the_parameter() {
        // GIVEN queries repeating a singular parameter, also with different spellings of the
        // same decoded name and with equal values
        for (query, name) in [
            ("s=a&s=b", "s"),
            ("s=demo&user_id=1&user_id=2", "user_id"),
            ("n=1&x=2&n=1", "n"),
            ("%73=demo&s=demo", "s"),
        ] {
            // WHEN the parameter is read THEN the error names it and says it was repeated
            let err = query_param(Some(query), name).unwrap_err();
            let body = err.body();
            assert_eq!(body["error"]["code"], "invalid_request", "{query}");
            assert_eq!(body["error"]["details"][0]["path"], name, "{query}");
            assert!(err.to_string().contains("2 times"), "{err}");
        }
        // AND the site key helper refuses `s=a&s=b` the same way on every route
        let err = site_key_param(Some("s=demo&s=other")).unwrap_err();
        assert_eq!(err.body()["error"]["details"][0]["path"], "s");
        // AND other parameters may repeat without touching this one
        assert_eq!(
            query_param(Some("s=demo&x=1&x=2"), "s").unwrap().unwrap(),
            "demo"
        );
        // AND list parameters collect every repeat in order
        assert_eq!(
            query_param_all(Some("exclude=a,b&s=demo&exclude=c"), "exclude"),
            ["a,b", "c"]
        );
        assert!(query_param_all(None, "exclude").is_empty());
    }

    #[test]
    fn gzip_bodies_are_decoded_within_the_limit() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        assert_eq!(&*decode_body(&h, &gz(b"hello"), 100).unwrap(), b"hello");
        // a small gzip that expands past the limit is refused (zip bomb)
        let bomb = gz(&vec![b'a'; 10_000]);
        assert!(bomb.len() < 100);
        assert!(matches!(
            decode_body(&h, &bomb, 1000),
            Err(AppError::PayloadTooLarge { .. })
        ));
        assert!(matches!(
            decode_body(&h, b"not gzip", 1000),
            Err(AppError::InvalidRequest { .. })
        ));
        // several members are one body (RFC 1952), within the same limit
        let two = [gz(b"hel"), gz(b"lo")].concat();
        assert_eq!(&*decode_body(&h, &two, 100).unwrap(), b"hello");
        assert!(matches!(
            decode_body(&h, &two, 4),
            Err(AppError::PayloadTooLarge { .. })
        ));
        // a 10,000-byte member after a small one is still bounded
        let bomb_after = [gz(b"x"), bomb.clone()].concat();
        assert!(matches!(
            decode_body(&h, &bomb_after, 1000),
            Err(AppError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn gzip_bodies_with_trailing_garbage_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        // GIVEN a valid member followed by bytes that are not gzip
        for tail in [&b"garbage"[..], b"\0", b"\x1f", b"\x1f\x8b\x08"] {
            let body = [gz(b"{}"), tail.to_vec()].concat();
            // WHEN decoded THEN it is an invalid request, not a silently shortened body
            match decode_body(&h, &body, 1000) {
                Err(AppError::InvalidRequest { field, problem }) => {
                    assert_eq!(field, "body");
                    assert!(problem.contains("after its last member"), "{problem}");
                }
                other => panic!("{tail:?}: {other:?}"),
            }
        }
        // a truncated member is refused too
        let whole = gz(b"{\"a\": 1}");
        assert!(matches!(
            decode_body(&h, &whole[..whole.len() - 3], 1000),
            Err(AppError::InvalidRequest { .. })
        ));
        h.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("br"),
        );
        assert!(matches!(
            decode_body(&h, b"x", 1000),
            Err(AppError::UnsupportedMediaType(_))
        ));
        let plain = HeaderMap::new();
        assert!(matches!(
            decode_body(&plain, &[0; 11], 10),
            Err(AppError::PayloadTooLarge { .. })
        ));
        assert_eq!(decode_body(&plain, &[0; 10], 10).unwrap().len(), 10);
    }
}
