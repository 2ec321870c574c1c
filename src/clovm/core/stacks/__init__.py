"""The cluster stacks behind ``clovm migrate``'s one seam (:class:`clovm.core.safemigrate.Stack`)."""
