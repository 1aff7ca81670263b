"""cut_translation: CUT / FastCUT unpaired image-to-image translation with PatchNCE.

Built on ``core_ssl``; the generator, discriminator and unaligned dataset live here.
"""
