"""
What every L{IAnnotator} promises, on its provider (the stories,
L{StoryService}) and the pipeline tests' double (L{CountingAnnotator}):
called with a batch of matched, analysed posts, it gives each its field
(C{story}; C{None} for a post it has nothing to say of, such as one
without words) in place, leaves the batch's order and the posts' other fields
alone, and answers at once or with a Deferred that fires.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from monitor.interfaces import IAnnotator
from monitor.stories import StoryClusterer, StoryService
from tests.alerts.helpers import T0, post
from tests.test_pipeline import CountingAnnotator

TEXTS = [
    "payments down at acme, checkout fails with an api error",
    "acme checkout fails again, payments api outage this morning",
    "the new acme phone camera is superb, lovely colours",
    "lovely colours from the acme phone camera at night",
    "",
    "acme 😡 " * 200,
]


def stories():
    service = StoryService(StoryClusterer(), Clock())
    service.startService()
    return service


KINDS = {"stories": stories, "double": CountingAnnotator}


@pytest.fixture(params=list(KINDS))
def annotator(request):
    a = KINDS[request.param]()
    yield a
    if getattr(a, "running", False):
        a.stopService()


def batch(first=0):
    return [post(first + i, T0 + first + i, text=text) for i, text in enumerate(TEXTS)]


def annotated(annotator, posts):
    result = annotator.annotate(posts)
    if isinstance(result, Deferred):
        out = []
        result.addBoth(out.append)
        assert out, "the Deferred must fire once the batch is annotated"
    else:
        assert result is None


def test_provides_the_interface(annotator):
    """verifyObject: annotate is there with its signature."""
    assert verifyObject(IAnnotator, annotator)


def test_every_post_gets_its_field_in_place_and_nothing_else_changes(annotator):
    """Each post with words has a story afterwards; the batch's order and every other field are as they were."""
    posts = batch()
    before = [{k: v for k, v in p.to_dict().items() if k != "story"} for p in posts]
    order = [p.uid for p in posts]
    annotated(annotator, posts)
    assert [p.uid for p in posts] == order
    assert [{k: v for k, v in p.to_dict().items() if k != "story"} for p in posts] == before
    assert all(p.story is None or isinstance(p.story, str) for p in posts)
    # A post with words gets a story; one without (the empty text) may have none.
    assert all(p.story for p in posts if p.text.strip())


def test_an_empty_batch_is_nothing(annotator):
    """An empty batch is answered at once."""
    annotated(annotator, [])


def test_batches_in_turn(annotator):
    """Batch after batch, each post of each gets its field."""
    first, second = batch(), batch(first=100)
    annotated(annotator, first)
    annotated(annotator, second)
    assert all(p.story for p in first + second if p.text.strip())
