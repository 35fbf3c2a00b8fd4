"""The template-free table path of the CLI (issue 17) prints exactly what the Go template
engine prints: for any table of plain `{{.Field}}` cells and any string rows, `plain_table`
equals `template_table`; and the default tables of `ps` and `images` take that path."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.cli import format as fmt

FIELD = st.from_regex(r"[A-Z][A-Za-z0-9]{0,8}", fullmatch=True)
# any text a daemon may send back, tabs and newlines included
VALUE = st.text(max_size=30)


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, list[dict[str, str]], dict[str, str]]:
    fields = draw(st.lists(FIELD, min_size=1, max_size=6))
    known = sorted(set(fields))
    rows = draw(st.lists(st.fixed_dictionaries({f: VALUE for f in known}), max_size=5))
    titles = draw(st.dictionaries(st.sampled_from(known), st.text(min_size=1, max_size=12)))
    return "\t".join("{{." + f + "}}" for f in fields), rows, titles


@given(tables())
def test_plain_table_prints_what_the_template_engine_prints(
        table: tuple[str, list[dict[str, str]], dict[str, str]]) -> None:
    body, rows, titles = table
    plain = fmt.plain_table(body, rows, titles)
    assert plain is not None
    assert plain == fmt.template_table(body, rows, titles)


@given(st.sampled_from(["{{.ID}} {{.Names}}", "{{.ID}}\t{{.Label \"a\"}}", "{{json .}}",
                        "{{.ID}}\t{{upper .Names}}", "{{ .ID }}", "x{{.ID}}"]))
def test_anything_but_plain_cells_goes_to_the_template_engine(body: str) -> None:
    assert fmt.plain_table(body, [{"ID": "a", "Names": "b"}], {}) is None


def test_a_field_that_is_not_a_string_goes_to_the_template_engine() -> None:
    rows = [fmt.container_row({"Id": "ab" * 32, "Labels": {"a": "b"}}, now=0.0)]
    assert fmt.plain_table("{{.ID}}\t{{.Label}}", rows, fmt.CONTAINER_TITLES) is None


def test_default_ps_and_images_tables_need_no_template_engine() -> None:
    container = {"Id": "ab" * 32, "Names": ["/web"], "Image": "busybox", "Command": "sh",
                 "Created": 1_700_000_000, "Ports": [{"PrivatePort": 80, "Type": "tcp"}],
                 "State": "running", "Status": "Up 2 minutes"}
    rows = [fmt.container_row(container, now=1_700_000_100.0)]
    body = fmt.CONTAINER_TABLE[len("table "):]
    assert fmt.plain_table(body, rows, fmt.CONTAINER_TITLES) == fmt.template_table(
        body, rows, fmt.CONTAINER_TITLES)
    image = {"Id": "sha256:" + "cd" * 32, "RepoTags": ["busybox:latest"],
             "Created": 1_700_000_000, "Size": 2_130_000}
    rows = fmt.image_rows(image, now=1_700_000_100.0)
    body = fmt.IMAGE_TABLE[len("table "):]
    assert fmt.plain_table(body, rows, fmt.IMAGE_TITLES) == fmt.template_table(
        body, rows, fmt.IMAGE_TITLES)
