"""cdvae_core: the Crystal Diffusion Variational Autoencoder (Xie et al., ICLR 2022).

Data flows CSV -> structures -> graphs -> model -> samples -> metrics:
``cdvae_core.data`` (datasets, parsing, graphs, cache, download), ``cdvae_core.geometry``
(periodic geometry in torch), ``cdvae_core.nn`` (encoders / decoders), ``cdvae_core.model``
(the CDVAE module, noise, losses, configs), ``cdvae_core.sampling`` (annealed Langevin, latent
optimisation), ``cdvae_core.metrics`` (the paper's metrics), ``cdvae_core.training``.
Importing the package has no side effects.
"""

__version__ = "0.1.0"
