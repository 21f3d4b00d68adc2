"""The zoo's built-in variants, one per sub-package.

Reached only through the ``zoo`` entry-point group (``zoo.list_variants()``),
never by importing ``plugins`` by name: another project may ship a top-level
package of the same name.
"""
