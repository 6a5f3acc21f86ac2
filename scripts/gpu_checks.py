"""Checks that need a CUDA GPU: run them on a GPU machine, they print a report.

The test suite runs on CPU; these checks cover what only an accelerator shows:

1. ``predict``: whole-scene prediction with bf16 autocast and channels-last on
   CUDA against fp32 on the CPU, on the same generated scene and model: class
   maps must agree on almost every pixel, probabilities must be close, and the
   output grid (CRS, transform, size) must be the input's.
2. ``ktda``: a few ``KTDASegmentation`` training steps with ``bf16-mixed``
   precision and a full-size DINOv2 ViT-B/14 teacher (random weights) distilling
   into a ConvNeXt student: the teacher must run in bf16, no gradient may reach
   it, the loss must be finite and the checkpoint must hold no teacher tensor.

Usage (one GPU)::

    python scripts/gpu_checks.py [--checks predict ktda] [--out report.json]

It exits 1 when a check fails; the JSON report holds every measured figure.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin


def _scene(path: Path, size: int) -> None:
    """A 3-band uint8 scene of smooth blobs on a UTM grid."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bands = []
    for k in range(3):
        field = np.sin(2 * np.pi * (k + 2) * xx) * np.cos(2 * np.pi * (k + 3) * yy)
        noise = rng.normal(0, 0.1, (size, size))
        bands.append(np.clip((field + noise + 1) * 120, 0, 255).astype('uint8'))
    profile = {
        'driver': 'GTiff',
        'width': size,
        'height': size,
        'count': 3,
        'dtype': 'uint8',
        'crs': 'EPSG:32633',
        'transform': from_origin(500000, 5000000, 10, 10),
        'tiled': True,
        'blockxsize': 256,
        'blockysize': 256,
        'compress': 'deflate',
    }
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(np.stack(bands))


def check_predict(work: Path, device: str, small: bool) -> dict[str, Any]:
    """bf16 + channels-last CUDA prediction against fp32 CPU prediction."""
    import segmentation_models_pytorch as smp

    from geopeft.predict import predict_raster

    size = 384 if small else 1536
    scene = work / 'scene.tif'
    _scene(scene, size)
    torch.manual_seed(0)
    model = smp.Unet('resnet18', encoder_weights=None, in_channels=3, classes=5)

    def run(device: str, precision: str, mode: str) -> tuple[np.ndarray, float]:
        out = work / f'{device}_{precision}_{mode}.tif'
        net = model.to(device).eval()

        def model_fn(x: torch.Tensor) -> torch.Tensor:
            return net(x / 255.0)

        start = time.perf_counter()
        predict_raster(
            model_fn,
            scene,
            out,
            device=device,
            precision=precision,
            output_mode=mode,
            chip_size=512,
            overlap=64,
            batch_size=8,
            progress=False,
            overwrite=True,
        )
        seconds = time.perf_counter() - start
        with rasterio.open(out) as dst, rasterio.open(scene) as src:
            assert dst.crs == src.crs, (dst.crs, src.crs)
            assert dst.transform == src.transform, (dst.transform, src.transform)
            assert (dst.width, dst.height) == (src.width, src.height)
            return dst.read(), seconds

    cpu_classes, cpu_s = run('cpu', '32', 'classes')
    cuda32_classes, cuda32_s = run(device, '32', 'classes')
    bf16_classes, bf16_s = run(device, 'bf16', 'classes')
    cpu_probs, _ = run('cpu', '32', 'probabilities')
    bf16_probs, _ = run(device, 'bf16', 'probabilities')
    report = {
        'scene_px': size,
        'cpu_fp32_seconds': round(cpu_s, 2),
        'cuda_fp32_seconds': round(cuda32_s, 2),
        'cuda_bf16_channels_last_seconds': round(bf16_s, 2),
        'agreement_cuda_fp32_vs_cpu': float((cuda32_classes == cpu_classes).mean()),
        'agreement_cuda_bf16_vs_cpu': float((bf16_classes == cpu_classes).mean()),
        'probability_max_abs_diff_bf16': float(np.abs(bf16_probs - cpu_probs).max()),
        'probability_mean_abs_diff_bf16': float(np.abs(bf16_probs - cpu_probs).mean()),
    }
    report['ok'] = (
        report['agreement_cuda_fp32_vs_cpu'] > 0.998
        and report['agreement_cuda_bf16_vs_cpu'] > 0.97
        and report['probability_mean_abs_diff_bf16'] < 0.02
    )
    return report


def check_ktda(work: Path, device: str, small: bool) -> dict[str, Any]:
    """bf16-mixed KTDA steps with a full-size ViT-B/14 teacher on CUDA."""
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, Dataset

    from geopeft.tasks import KTDASegmentation

    steps, batch_size, px = (2, 2, 224) if small else (6, 4, 512)
    cuda = device.startswith('cuda')

    class Squares(Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return batch_size * steps

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(index)
            image = torch.randn(3, px, px, generator=g) * 0.2
            mask = torch.zeros(px, px, dtype=torch.long)
            s = (index * 37) % (px // 2)
            mask[s : s + px // 2, s : s + px // 2] = 1
            image[:, mask.bool()] += 1
            return {'image': image, 'mask': mask}

    teacher_file = work / 'teacher.pt'
    from geopeft.distill import DINOv2Teacher

    torch.save(DINOv2Teacher('dinov2_vitb14').model.state_dict(), teacher_file)
    task = KTDASegmentation(
        backbone='convnext_tiny',
        num_classes=2,
        teacher='dinov2_vitb14',
        teacher_weights=str(teacher_file),
        fmm_depth=1,
        warmup_iters=0,
    )
    dtypes: list[torch.dtype] = []
    seconds: list[float] = []

    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - self.start)

    original = task.teacher_features

    def spy(images: torch.Tensor) -> Any:
        teacher = task.build_teacher()
        hook = teacher.model.blocks[0].attn.qkv.register_forward_hook(
            lambda module, args, output: dtypes.append(output.dtype)
        )
        try:
            return original(images)
        finally:
            hook.remove()

    task.teacher_features = spy  # type: ignore[method-assign]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(
        accelerator='gpu' if cuda else 'cpu',
        devices=1,
        precision='bf16-mixed',
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        callbacks=[StepTimer()],
        default_root_dir=work,
    )
    loader = DataLoader(Squares(), batch_size=batch_size, num_workers=2)
    trainer.fit(task, train_dataloaders=loader)
    checkpoint = work / 'ktda.ckpt'
    trainer.save_checkpoint(checkpoint)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    teacher_grads = [p.grad for p in task.teacher.parameters() if p.grad is not None]
    loss = float(trainer.callback_metrics.get('train_loss', torch.tensor(float('nan'))))
    report = {
        'steps': steps,
        'batch_size': batch_size,
        'image_px': px,
        'teacher_block_dtypes': sorted({str(d) for d in dtypes}),
        'teacher_grads': len(teacher_grads),
        'teacher_keys_in_checkpoint': sum('teacher' in k for k in state),
        'train_loss': loss,
        'step_seconds_median_after_first': float(np.median(seconds[1:])),
        'peak_memory_gb': torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
    }
    report['ok'] = (
        report['teacher_block_dtypes'] == ['torch.bfloat16']
        and report['teacher_grads'] == 0
        and report['teacher_keys_in_checkpoint'] == 0
        and bool(np.isfinite(loss))
    )
    return report


CHECKS = {'predict': check_predict, 'ktda': check_ktda}


def main() -> int:
    """Run the checks; print and optionally save the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checks', nargs='+', default=list(CHECKS), choices=CHECKS)
    parser.add_argument('--out', type=Path, default=None)
    parser.add_argument('--device', default='cuda', help="'cpu' for a dry run")
    parser.add_argument('--small', action='store_true', help='tiny sizes (dry run)')
    args = parser.parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print('no CUDA device: these checks need a GPU', file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'
    report: dict[str, Any] = {'device': name}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.checks:
            try:
                report[name] = CHECKS[name](Path(tmp), args.device, args.small)
            except Exception as error:  # report every check, then fail
                error_text = f'{type(error).__name__}: {error}'
                report[name] = {'ok': False, 'error': error_text}
            print(name, json.dumps(report[name], indent=1), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if all(report[n]['ok'] for n in args.checks) else 1


if __name__ == '__main__':
    sys.exit(main())
