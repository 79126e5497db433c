"""Transform steps: pure ``(DataFrame, **params) -> DataFrame`` functions, run in order.

- :mod:`.specs`    the step specs and their validation (pandas-free: a config loads without it)
- :mod:`.runner`   ``apply_steps``: runs the steps, with the registry of built-in ops
- :mod:`.columns`, :mod:`.rows`, :mod:`.cast`, :mod:`.fastpath`   the built-in ops
- :mod:`.incremental`   the streaming groupby
- :mod:`.custom`   user steps named by a dotted path

Import from the module that defines a name; this package imports nothing, so loading the specs
never loads pandas.
"""
