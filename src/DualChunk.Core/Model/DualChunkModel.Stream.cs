using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using DualChunk.Kernels;

namespace DualChunk.Core;

// The streaming entry (DualChunkStream holds the rest): creation, and one append run like a call of Run.
public sealed unsafe partial class DualChunkModel
{
    /// <summary>Default room of a new stream, in chunks, when no capacity is given.</summary>
    private const int DefaultStreamChunks = 64;

    private ulong _fingerprint; // of the biases, norms and gates, for stream snapshots; 0 until first needed

    /// <summary>
    /// A stream of <paramref name="batch"/> sequences that grow one chunk at a time (<see cref="DualChunkStream.Append"/>),
    /// with state for <paramref name="capacity"/> positions (a multiple of C; default 64·C, capped by MaxSeqLen) allocated
    /// now. Past the capacity an append doubles it (it allocates); <see cref="DualChunkStream.EnsureCapacity"/> reserves more.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="batch"/> is not positive or over MaxBatch, <paramref name="capacity"/> over MaxSeqLen, or the state would not fit one array.</exception>
    /// <exception cref="ArgumentException"><paramref name="capacity"/> is not a multiple of C.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public DualChunkStream CreateStream(int batch = 1, int? capacity = null)
    {
        int c = Config.ChunkSize;
        int positions = capacity ?? (int)Math.Min((long)DefaultStreamChunks * c, (long)(_maxSeqLen ?? int.MaxValue) / c * c);
        CheckLimits(batch, Math.Max(positions, c));
        Enter();
        try
        {
            _pool.PlanForAppend(batch, Math.Max(positions / c, 1)); // its appends' workspace within the limits, checked now
            return new DualChunkStream(this, batch, Math.Max(positions / c, 1));
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>
    /// A new stream holding <paramref name="snapshot"/> (what <see cref="DualChunkStream.Snapshot()"/> returned for a
    /// stream of this model), with the snapshot's batch and length: how a server resumes a parked or handed-over
    /// sequence. The bytes are untrusted and checked as by <see cref="DualChunkStream.Restore"/>; state beyond one
    /// chunk is allocated only after they passed.
    /// </summary>
    /// <exception cref="StreamSnapshotException">The bytes are not a valid snapshot of a stream of this model (the message names the mismatch, e.g. both weights fingerprints), or name a batch outside 1..MaxBatch.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public DualChunkStream RestoreStream(ReadOnlySpan<byte> snapshot)
    {
        int batch = DualChunkStream.SnapshotBatch(snapshot);
        if (batch < 1 || batch > (_maxBatch ?? int.MaxValue))
            throw new StreamSnapshotException(string.Create(CultureInfo.InvariantCulture,
                $"The snapshot holds batch {batch}, outside this model's 1..{_maxBatch ?? int.MaxValue} (MaxBatch)."));
        // Every sequence of the batch carries 2H float64 sums: a batch the bytes cannot hold is refused before the
        // state of that batch is allocated.
        if ((long)batch * 2 * Config.HiddenSize * sizeof(double) > snapshot.Length)
            throw new StreamSnapshotException(string.Create(CultureInfo.InvariantCulture,
                $"The snapshot claims batch {batch} but is only {snapshot.Length:N0} bytes: it is truncated or corrupted."));
        var stream = CreateStream(batch, Config.ChunkSize);
        try
        {
            stream.Restore(snapshot);
            return stream;
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>MaxSeqLen of the options (streams stop there).</summary>
    internal int? MaxSeqLenLimit => _maxSeqLen;

    /// <summary>
    /// XxHash64 of every bias, layer-norm parameter and gate (cheap, computed once): a stream snapshot names the model
    /// it was taken from, so restoring it into another model of the same dimensions is refused.
    /// </summary>
    internal ulong Fingerprint
    {
        get
        {
            if (_fingerprint != 0) return _fingerprint;
            var hash = new XxHash64();
            _forward.AppendFingerprint(hash);
            return _fingerprint = hash.GetCurrentHashAsUInt64() | 1; // never 0
        }
    }

    /// <summary>
    /// One append of <paramref name="stream"/> (shapes checked by the stream): the input checked finite, the model's
    /// workspace rented from the pool and the worker group taken as by Run (the stream holds no workspace between
    /// appends), the caller's buffers pinned, the stream pass (<see cref="StreamChunk{TNorm, TFeedForward}"/>) run; on a
    /// non-finite output it runs again locating the stage and throws. True when the stream's work sums were updated (All, MeanPool).
    /// </summary>
    internal bool AppendCore(DualChunkStream stream, ReadOnlySpan<float> chunk, Span<float> output, OutputMode mode, CancellationToken ct)
    {
        Enter();
        try
        {
            ThrowIfNotFinite(chunk, Config.ChunkSize, "Chunk", "appending", nameof(chunk));
            ct.ThrowIfCancellationRequested();
            var workspace = _pool.RentForAppend(stream.Batch, stream.Chunks + 1, stream.State.Capacity);
            try
            {
                var group = BeginCall(workspace);
                try
                {
                    fixed (float* pinnedInput = chunk)
                    fixed (float* pinnedOutput = output)
                    {
                        _forward.RunStream(stream, chunk, output, mode, workspace, locate: false, ct);
                        int nonFinite = NonFinite.IndexOf(output);
                        if (nonFinite >= 0)
                            throw Overflow(output, nonFinite, stream.Batch, mode == OutputMode.All ? Config.ChunkSize : 1, mode,
                                _forward.RunStream(stream, chunk, output, mode, workspace, locate: true, ct));
                    }
                }
                finally
                {
                    EndCall(workspace, group);
                }
            }
            finally
            {
                _pool.Return(workspace);
            }
            return mode != OutputMode.LastTimestep;
        }
        finally
        {
            Exit();
        }
    }
}
