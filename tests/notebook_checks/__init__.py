"""One module per notebook: ``QUICK`` (papermill parameters for CI) and ``check(findings)``.

``tests/test_notebooks.py`` runs every notebook with its module's ``QUICK`` parameters and
calls its ``check`` on the saved findings; a notebook without a module (or a module without
a notebook) fails the suite.
"""
