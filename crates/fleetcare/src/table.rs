//! Aligned tables for people; `--json` output is the API's own JSON instead.

/// Render rows under a header, each column as wide as its widest cell, two spaces apart.
/// The last column is not padded.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                let pad = widths[i] - c.chars().count() + 2;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let t = super::render(
            &["ID", "MODEL", "UNITS"],
            &[
                vec!["A-1".into(), "acme-mfp-9000".into(), "10".into()],
                vec!["LONGER-ID".into(), "p".into(), "4".into()],
            ],
        );
        assert_eq!(
            t,
            "ID         MODEL          UNITS\n\
             A-1        acme-mfp-9000  10\n\
             LONGER-ID  p              4\n"
        );
    }
}
