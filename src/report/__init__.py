"""The report stage: a sweep's comparison from the tracking store alone. The runs are read by
:mod:`src.report.queries`, the verdict made by :mod:`src.report.verdict`, the figures drawn by
:mod:`src.report.figures`, the page assembled by :mod:`src.report.page` (its parts in
:mod:`src.report.sections`, its HTML in :mod:`src.report.html`); ``python -m src.report``
(:mod:`src.report.__main__`) rebuilds it."""
