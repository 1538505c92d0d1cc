"""
Analysis that learns from people: corrections of posts, models trained on
them in the background, and those models applied to new posts.

The models are linear over named features (L{monitor.learn.features}),
stored as JSON (L{monitor.learn.linear}), trained and cross-validated with
numpy in a worker process (L{monitor.learn.train}); the figures against
people's labels are in quality/README.md.
"""
