// Robust Video Matting over raw RGB frames, in order, its recurrent state carried across them.
//   node bench/rvm_baseline.js MODEL_DIR FRAMES.rgb T H W DOWNSAMPLE_RATIO ALPHA.out
// FRAMES.rgb: T x H x W x 3 bytes; ALPHA.out: T x H x W bytes (0..255). Run by rvm_baseline.py.
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..', '.venv-rvm', 'node_modules');
const tf = require(path.join(root, '@tensorflow/tfjs'));
require(path.join(root, '@tensorflow/tfjs-backend-wasm'));

const [modelDir, framesPath, T, H, W, ratio, outPath] = process.argv.slice(2);
const [t, h, w] = [Number(T), Number(H), Number(W)];

const fromFiles = {
  load: async () => {
    const graph = JSON.parse(fs.readFileSync(path.join(modelDir, 'rvm.json')));
    const bin = fs.readFileSync(path.join(modelDir, 'rvm.bin'));
    return {
      modelTopology: graph.modelTopology,
      weightSpecs: graph.weightsManifest[0].weights,
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
      format: graph.format,
      signature: graph.signature,
    };
  },
};

async function main() {
  await tf.setBackend('wasm');
  const model = await tf.loadGraphModel(fromFiles);
  const frames = fs.readFileSync(framesPath);
  const alphas = Buffer.alloc(t * h * w);
  const downsample = tf.scalar(Number(ratio));
  let state = [tf.scalar(0), tf.scalar(0), tf.scalar(0), tf.scalar(0)]; // r1..r4, empty at start
  const start = Date.now();
  for (let i = 0; i < t; i++) {
    const rgb = new Uint8Array(frames.buffer, frames.byteOffset + i * h * w * 3, h * w * 3);
    const src = tf.tidy(() => tf.tensor4d(rgb, [1, h, w, 3], 'int32').toFloat().div(255));
    // outputs: pha, r1o..r4o, fgr (names from the graph's signature)
    const out = await model.executeAsync(
      { src, r1i: state[0], r2i: state[1], r3i: state[2], r4i: state[3], downsample_ratio: downsample },
      ['Identity_1:0', 'Identity_2:0', 'Identity_3:0', 'Identity_4:0', 'Identity_5:0', 'Identity:0'],
    );
    const pha = await out[0].data();
    for (let k = 0; k < h * w; k++) alphas[i * h * w + k] = Math.round(Math.min(1, Math.max(0, pha[k])) * 255);
    state.forEach((s) => s.dispose());
    state = out.slice(1, 5);
    [out[0], out[5], src].forEach((x) => x.dispose());
  }
  fs.writeFileSync(outPath, alphas);
  console.log(`${((Date.now() - start) / t).toFixed(0)} ms/frame`);
}

main();
