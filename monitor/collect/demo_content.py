"""
Synthetic but realistic posts for the demo source and the bench.

Pure and deterministic: everything comes from the C{random.Random} handed
in, so a seed replays the same stream.  The text is built from template
tables so that every stage downstream has something to do: the matcher sees
names, @handles, #hashtags and a second brand; analysis sees praise,
complaints, negation, emoji, questions, purchase intent and crisis words in
four languages; alerts see bursts (an outage, a viral complaint).

Bursts are a pure function of time: time is cut into slots of
C{burst_every} seconds and each slot holds one burst, placed by a generator
seeded from the slot number.  So C{rate(now)} and C{current_burst(now)} do
not depend on how often, or in which order, they are called.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from monitor.model import Post

__all__ = ["DemoContent", "brand_terms"]

# {brand} name, {handle} support account, {official} brand account, {tag}
# and {downtag} hashtags, {other} a second brand.  Every template names its
# brand in at least one of the first five ways.
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "en": {
        "complaint": [
            "{handle} my order is still not here, worst service ever",
            "been on hold with {brand} for {n} minutes. {n} MINUTES.",
            "{brand} charged me twice and support keeps closing my ticket",
            "{brand} support isn't great, third time asking the same thing",
            "the latest {brand} {product} update broke everything {tag}",
            "why is it so hard to cancel {brand}? this is ridiculous",
            "{handle} still waiting for my refund, it's been {n} days",
            "never buying from {brand} again. never.",
        ],
        "crisis": [
            "{brand} outage again?? nothing loads {downtag}",
            "reports of a data breach at {brand}, change your passwords now",
            "my {brand} account got hacked and {handle} won't respond",
            "{brand} hit with class action lawsuit over hidden fees",
            "{brand} announces recall of {product} after overheating reports",
            "whole office can't log in, {brand} outage? {downtag}",
        ],
        "question": [
            "is {brand} down for anyone?",
            "does anyone know if {brand} ships to {city}?",
            "{handle} how do I change the email on my account?",
            "has anyone tried the new {brand} {product}? worth it?",
            "what time does {brand} support open on weekends?",
        ],
        "purchase_intent": [
            "looking for an alternative to {brand}, any recommendations?",
            "thinking about switching from {brand} to {other}, thoughts?",
            "about to buy the {brand} {product}, convince me otherwise",
            "need a new {product}, is {brand} any good?",
            "where can I get the {brand} {product} cheapest?",
        ],
        "praise": [
            "shoutout to {handle}, fixed my issue in 5 minutes",
            "honestly the new {brand} {product} is not bad at all",
            "love my new {brand} {product} {tag}",
            "{brand} just keeps getting better",
            "{brand} customer service actually called me back. impressed.",
            "switched from {other} to {brand} last month, no regrets",
        ],
        "news": [
            "{brand} reports quarterly earnings in line with forecasts {link}",
            "{brand} to open a new office in {city} {link}",
            "{official} announces partnership with {other} {link}",
            "{brand} names a new chief financial officer {link}",
            "{brand} {product} launch event set for next week {tag}",
        ],
        "mention": [
            "at the {brand} store in {city} right now",
            "anyone else get the {brand} newsletter today",
            "{brand} vs {other}, which one do you use",
            "the {brand} ad during the game was... something",
            "my mum still uses her old {brand} {product}",
        ],
    },
    "de": {
        "complaint": [
            "{handle} meine Bestellung ist immer noch nicht da, furchtbarer Service",
        ],
        "crisis": ["Ist {brand} gerade down? Nichts lädt {downtag}"],
        "praise": ["Ich bin echt begeistert von {brand}! {tag}"],
        "question": ["Hat jemand Erfahrung mit {brand}?"],
        "purchase_intent": ["Suche eine Alternative zu {brand}, Empfehlungen?"],
    },
    "fr": {
        "complaint": ["{handle} ma commande n'est toujours pas arrivée, service nul"],
        "crisis": ["{brand} est en panne ? Impossible de se connecter {downtag}"],
        "praise": ["Franchement, {brand} c'est top, rien à redire {tag}"],
        "question": ["Quelqu'un a déjà commandé chez {brand} ?"],
        "purchase_intent": ["Je cherche une alternative à {brand}, des idées ?"],
    },
    "es": {
        "complaint": ["{handle} mi pedido todavía no llega, pésimo servicio"],
        "crisis": ["¿Se cayó {brand}? No carga nada {downtag}"],
        "praise": ["Me encanta {brand}, el mejor servicio {tag}"],
        "question": ["¿Alguien sabe si {brand} envía a {city}?"],
        "purchase_intent": ["Busco una alternativa a {brand}, ¿recomendaciones?"],
    },
}
LANGUAGES = {"en": 88, "de": 5, "fr": 4, "es": 3}
KINDS = {"praise": 20, "complaint": 18, "mention": 16, "question": 14, "news": 12, "purchase_intent": 10, "crisis": 4}
OUTAGE_KINDS = {"outage": 55, "crisis": 20, "complaint": 20, "official": 5}
OUTAGE = [
    "is {brand} down for anyone?",
    "{brand} down again?? {downtag}",
    "can't log in to {brand}, anyone else? {downtag}",
    "{handle} the app has been down for an hour, any update?",
    "this {brand} outage is costing me money, unacceptable",
    "third {brand} outage this month. switching to {other}",
]
OFFICIAL = [
    "We're aware some {brand} customers can't log in. Our team is on it: {link}",
    "Update: {brand} services are recovering. Sorry for the trouble. {link}",
]
VIRAL_QUOTES = [
    "RT @{author}: {text}",
    'this 👇 "{text}" {handle} please respond',
    'same thing happened to me with {brand}. "{text}"',
    '{brand} really needs to answer this. "{text}"',
]
EMOJI = {
    "complaint": ["😡", "😤", "🙄", "👎", "💀"],
    "outage": ["😡", "🙄", "💀"],
    "crisis": ["😡", "😱", "💀"],
    "praise": ["🙌", "❤️", "😍", "🔥", "👏"],
    "question": ["🤔", "👀"],
}
PRODUCTS = ["app", "router", "headphones", "subscription", "smart speaker", "laptop"]
# name, lat, lon
CITIES = [
    ("London", 51.507, -0.128),
    ("Berlin", 52.520, 13.405),
    ("Paris", 48.857, 2.352),
    ("Madrid", 40.417, -3.704),
    ("New York", 40.713, -74.006),
    ("Chicago", 41.878, -87.630),
    ("Toronto", 43.653, -79.383),
    ("Sydney", -33.869, 151.209),
]
FIRST = [
    "maria",
    "jon",
    "aisha",
    "li",
    "tom",
    "sofia",
    "raj",
    "emma",
    "lukas",
    "chloe",
    "diego",
    "nina",
    "sam",
    "yuki",
    "omar",
    "lea",
    "kofi",
    "ana",
]
LAST = ["smith", "k", "muller", "dupont", "garcia", "chen", "okafor", "ross", "novak", "silva", "tanaka", "b"]


def _slug(brand: str) -> str:
    return re.sub(r"[^a-z0-9]", "", brand.lower())


def brand_terms(brand: str) -> tuple[str, ...]:
    """
    The name, @handles and #hashtags demo posts use for C{brand}: the terms
    a demo configuration should track so that every demo post matches.
    """
    s = _slug(brand)
    return (brand, f"@{s}", f"@{s}support", f"#{s}", f"#{s}down")


@dataclass(frozen=True)
class _Burst:
    """
    One scheduled burst; the viral fields say which post goes viral.
    """

    kind: str
    brand: str
    started_at: float
    ends_at: float
    multiplier: float
    viral_author: int = 0
    viral_text: str = ""
    slot: int = 0


def _weighted(rng: random.Random, table: dict[str, int]) -> str:
    return rng.choices(list(table), weights=list(table.values()))[0]


class DemoContent:
    """
    A stream of synthetic posts about C{brands}, with bursts.
    """

    def __init__(
        self,
        brands: Sequence[str],
        rng: random.Random,
        base_rate: float = 2.0,
        burst_every: Optional[float] = 900.0,
        authors: int = 400,
    ) -> None:
        if not brands or not all(_slug(b) for b in brands):
            raise ValueError("brands must be non-empty names with letters or digits")
        self.brands = list(brands)
        self.base_rate = base_rate
        self.burst_every = burst_every
        self._rng = rng
        self._seed = rng.getrandbits(64)
        self._prefix = f"{rng.getrandbits(32):08x}"
        self._counter = 0
        self._viral_sent: Optional[int] = None  # slot of the last original
        self._cached: tuple[Optional[int], Optional[_Burst]] = (None, None)
        self._authors = self._make_authors(authors)

    def _make_authors(self, count: int) -> list[tuple[str, int, bool]]:
        """
        Handles with a skewed following: a few influencers, many with dozens.
        """
        rng, names = self._rng, {}
        while len(names) < count:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            style = rng.randrange(4)
            name = [f"{first}{last}", f"{first}_{last[0]}", f"{first}{rng.randrange(100)}", f"the{first}{last}"][style]
            if name in names:
                continue
            if len(names) < max(3, count // 50):
                names[name] = (rng.randint(100_000, 2_500_000), rng.random() < 0.7)
            else:
                followers = min(int(rng.lognormvariate(4, 1.5)), 99_999)
                names[name] = (followers, rng.random() < 0.01)
        return [(n, f, v) for n, (f, v) in names.items()]

    def _burst_at(self, now: float) -> Optional[_Burst]:
        """
        The burst at C{now}: the one burst of its slot, if C{now} is in it.
        """
        if not self.burst_every or self.burst_every <= 0:
            return None
        slot = math.floor(now / self.burst_every)
        if self._cached[0] != slot:
            self._cached = (slot, self._plan(slot))
        burst = self._cached[1]
        if burst and burst.started_at <= now < burst.ends_at:
            return burst
        return None

    def _plan(self, slot: int) -> _Burst:
        """
        Place the burst of C{slot}, from a generator seeded by the slot alone.
        """
        every = self.burst_every
        rng = random.Random(f"{self._seed}:{slot}")
        kind = "outage" if rng.random() < 0.6 else "viral"
        low, high = (120, 480) if kind == "outage" else (240, 900)
        duration = min(rng.uniform(low, high), 0.6 * every)
        start = slot * every + rng.uniform(0, every - duration)
        brand = rng.choice(self.brands)
        text = ""
        if kind == "viral":
            text = self._fill(rng, rng.choice(TEMPLATES["en"]["complaint"]), brand)
        return _Burst(
            kind,
            brand,
            start,
            start + duration,
            10.0 if kind == "outage" else 4.0,
            rng.randrange(len(self._authors)),
            text,
            slot,
        )

    def current_burst(self, now: float) -> Optional[dict[str, Any]]:
        """
        The burst under way at C{now}, as a dict for logs, or C{None}.
        """
        b = self._burst_at(now)
        if b is None:
            return None
        return {"kind": b.kind, "brand": b.brand, "started_at": b.started_at, "ends_at": b.ends_at}

    def rate(self, now: float) -> float:
        """
        Posts per second at C{now}: the base rate, multiplied during bursts.
        """
        b = self._burst_at(now)
        return self.base_rate * (b.multiplier if b else 1.0)

    def _fill(self, rng: random.Random, template: str, brand: str) -> str:
        others = [b for b in self.brands if b != brand] or [brand]
        s = _slug(brand)
        return template.format(
            brand=brand,
            handle=f"@{s}support",
            official=f"@{s}",
            tag=f"#{s}",
            downtag=f"#{s}down",
            other=rng.choice(others),
            n=rng.randint(2, 90),
            product=rng.choice(PRODUCTS),
            city=rng.choice(CITIES)[0],
            link=f"https://news.demo.invalid/{s}/{rng.randrange(10**6)}",
        )

    def make_post(self, now: float, source: str) -> Post:
        """
        One post written around C{now}, shaped by the burst under way.
        """
        rng = self._rng
        burst = self._burst_at(now)
        brand, lang, boost = rng.choice(self.brands), "en", 1.0
        author = rng.choice(self._authors)
        if burst and burst.kind == "outage" and rng.random() < 0.75:
            brand, kind = burst.brand, _weighted(rng, OUTAGE_KINDS)
        elif burst and burst.kind == "viral" and rng.random() < 0.6:
            brand, kind = burst.brand, "viral"
            boost = 1 + 30 * (now - burst.started_at) / (burst.ends_at - burst.started_at)
        else:
            lang = _weighted(rng, LANGUAGES)
            kind = _weighted(rng, {k: w for k, w in KINDS.items() if k in TEMPLATES[lang]})

        self._counter += 1
        native_id = f"{self._prefix}-{self._counter}"
        if kind in ("outage", "official"):
            if kind == "official":
                author = (_slug(brand), 250_000, True)
            template = rng.choice(OUTAGE if kind == "outage" else OFFICIAL)
            text = self._fill(rng, template, brand)
        elif kind == "viral" and burst.slot != self._viral_sent:
            # The original: sent once, then reposted and quoted.
            self._viral_sent = burst.slot
            author = self._authors[burst.viral_author]
            native_id = f"{self._prefix}-viral-{burst.slot}"
            text, boost = burst.viral_text, 40.0
        elif kind == "viral":
            text = rng.choice(VIRAL_QUOTES).format(
                author=self._authors[burst.viral_author][0],
                text=burst.viral_text,
                brand=brand,
                handle=f"@{_slug(brand)}support",
            )
        else:
            text = self._fill(rng, rng.choice(TEMPLATES[lang][kind]), brand)
        if kind in EMOJI and rng.random() < 0.3:
            text += " " + rng.choice(EMOJI[kind])

        name, followers, verified = author
        scale = 2 + math.sqrt(followers) / 5
        likes = min(int((rng.paretovariate(1.3) - 1) * scale * boost), 10**7)
        lat = lon = None
        if rng.random() < 0.05:
            _, lat, lon = rng.choice(CITIES)
            lat, lon = lat + rng.uniform(-0.05, 0.05), lon + rng.uniform(-0.05, 0.05)
        return Post(
            source=source,
            network=source,
            native_id=native_id,
            text=text,
            author=name,
            created_at=now - rng.uniform(0, 3),
            url=f"https://demo.invalid/{name}/{native_id}",
            lang=lang,
            likes=likes,
            reposts=int(likes * rng.random() * 0.3),
            replies=int(likes * rng.random() * 0.15),
            author_followers=followers,
            author_verified=verified,
            lat=lat,
            lon=lon,
            received_at=now,
            extra={"demo_kind": kind, "burst": burst.kind if burst else None},
        )
