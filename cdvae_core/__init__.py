"""cdvae_core: the Crystal Diffusion Variational Autoencoder (Xie et al., ICLR 2022).

Data flows CSV -> structures -> graphs -> model -> samples -> metrics (``ARCHITECTURE.md``):
``cdvae_core.data`` (datasets, parsing, graphs, cache, download), ``cdvae_core.geometry``
(periodic geometry in torch), ``cdvae_core.diffusion`` (noise schedules, the Langevin and
predictor-corrector loops, presets; no network), ``cdvae_core.nn`` (encoders / decoders),
``cdvae_core.model`` (the CDVAE, its decoding and its file format), ``cdvae_core.predictor``
(independent property networks), ``cdvae_core.metrics`` (the paper's metrics),
``cdvae_core.training`` (Lightning), ``cdvae_core.explore`` (looking at a trained model),
``cdvae_core.experiments`` (the paper's protocols, model cards).
Importing the package has no side effects.
"""

__version__ = "0.1.0"
