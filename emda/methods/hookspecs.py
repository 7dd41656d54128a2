"""Hook specifications for emda plugins.

A plugin is a module (or object) exposed through the ``emda`` entry-point group
in its package metadata::

    [project.entry-points.emda]
    my_method = "my_package.my_module"

that implements one or more of the hooks below, decorated with
:data:`hookimpl`. Hooks only *register* things; the registered objects do the work.
"""

import pluggy

PROJECT = "emda"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def emda_register_methods(register):
    """Register domain-adaptation methods.

    Call ``register.add(MethodClass)`` once per method, where ``MethodClass`` is a
    subclass of :class:`emda.Method` with a unique ``name``. Two plugins adding
    the same name is an error that names both.
    """
