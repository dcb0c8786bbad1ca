"""Multi-resolution STFT loss (DDSP-style: L1 on magnitudes plus L1 on log magnitudes)."""

from __future__ import annotations

import torch

DEFAULT_FFT_SIZES = (2048, 1024, 512, 256, 128, 64)


class MultiResolutionSTFTLoss(torch.nn.Module):
    """``loss(pred [B, N], target [B, N])`` averaged over resolutions.

    For each FFT size ``n``: hop ``n // 4``, Hann window,
    ``mean|S_p - S_t| + log_weight * mean|log(S_p + eps) - log(S_t + eps)|``.
    """

    def __init__(self, fft_sizes=DEFAULT_FFT_SIZES, log_weight: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.fft_sizes = tuple(int(n) for n in fft_sizes)
        self.log_weight = log_weight
        self.eps = eps
        for n in self.fft_sizes:
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def spectrogram(self, x: torch.Tensor, n: int) -> torch.Tensor:
        win = getattr(self, f"win{n}").to(x.dtype)
        s = torch.stft(x, n_fft=n, hop_length=n // 4, win_length=n, window=win, center=True,
                       return_complex=True)
        return s.abs()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        for n in self.fft_sizes:
            sp = self.spectrogram(pred, n)
            st = self.spectrogram(target, n)
            total = total + (sp - st).abs().mean()
            total = total + self.log_weight * (torch.log(sp + self.eps)
                                               - torch.log(st + self.eps)).abs().mean()
        return total / len(self.fft_sizes)
