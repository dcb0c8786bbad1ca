"""Mix two model folders of one architecture: every tensor ``(1 - alpha) * A + alpha * B``.

    python tools/mix_weights.py A B ALPHA OUT

OUT gets B's config.json and README.md (edit them) and the mixed model.safetensors. Used for the
morph's onset fix (models/morph/README.md): 0.3 of a fine-tune with the one-sided attack term
keeps every held-out onset before the source's while the rest stays as the model was.
"""
import shutil
import sys

from safetensors.numpy import load_file, save_file


def main(argv=None) -> int:
    a, b, alpha, out = (argv or sys.argv[1:])[:4]
    alpha = float(alpha)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(b, out)
    A, B = load_file(f"{a}/model.safetensors"), load_file(f"{b}/model.safetensors")
    if A.keys() != B.keys() or any(A[k].shape != B[k].shape for k in A):
        raise SystemExit("mix_weights: the two models differ in architecture")
    save_file({k: ((1 - alpha) * A[k] + alpha * B[k]).astype(A[k].dtype) for k in A},
              f"{out}/model.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
