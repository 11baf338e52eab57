"""An HTML page as a browser's tokenizer sees it, for tests of ``runbook report``."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any


class Page(HTMLParser):
    """What a browser's tokenizer sees: elements, attributes, text, raw script bodies."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self.titles: list[str] = []
        self._in: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style", "title"):
            self._in = tag
            if tag == "script":
                self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        elif self._in == "style":
            self.styles.append(data)
        elif self._in == "title":
            self.titles.append(data)
        else:
            self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]

    def tags_with_class(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for _, attrs in self.tags if name in (attrs.get("class") or "").split()]

    def by_id(self, id_: str) -> dict[str, str | None]:
        return next(attrs for _, attrs in self.tags if attrs.get("id") == id_)

    def data(self) -> dict[str, Any]:
        body = next(b for a, b in self.scripts if a.get("type") == "application/json")
        return json.loads(body, parse_constant=_refuse)  # as strict as JSON.parse

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
