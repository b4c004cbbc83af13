"""SynergAI Gateway.

Importing the package first checks for a fresh compiled build of the hot modules
(:mod:`gateway.native`): used when every compiled source is unchanged, else pure Python.
"""

from gateway.native import install as _install_native

_install_native()
