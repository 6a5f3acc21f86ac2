"""What whole-scene prediction costs besides the model: a near-free model end to end.

On a fast GPU the model takes a fraction of the time of reading, blending and
writing. This script runs :func:`geopeft.predict.predict_raster` on a scene with a
1x1 convolution (seeded, so two code versions write the same map) on the CPU and
prints the end-to-end seconds (best of ``--repeats``) and the time inside the
model. Compare code versions by running it from each checkout
(``PYTHONPATH=<checkout> python scripts/pipeline_cost.py SCENE``)::

    python scripts/pipeline_cost.py scene_8192px_3b_uint8_tile512.tif
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from geopeft.predict import predict_raster


def main() -> None:
    """Run the near-free model over the scene and print the times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('scene', type=Path, help="a GeoTIFF (bench predict's)")
    parser.add_argument('--classes', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    import rasterio

    with rasterio.open(args.scene) as src:
        bands = src.count
    net = torch.nn.Conv2d(bands, args.classes, 1)

    def model(x: torch.Tensor) -> torch.Tensor:
        return net(x / 255.0)

    times = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            start = time.perf_counter()
            report = predict_raster(
                model,
                args.scene,
                Path(folder) / 'map.tif',
                device='cpu',
                batch_size=args.batch_size,
                progress=False,
                overwrite=True,
            )
            times.append(time.perf_counter() - start)
    print(
        f'end-to-end {min(times):.2f} s (best of {args.repeats}: '
        f'{", ".join(f"{t:.2f}" for t in times)}); in the model '
        f'{report.model_seconds:.2f} s; {report.chips} chips'
    )


if __name__ == '__main__':
    main()
