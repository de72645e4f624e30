namespace DualChunk.Server.Sequences.Store;

/// <summary>
/// Where sequences outlive a replica (docs/deploy.md "Sequences across replicas"): a snapshot of each spilled sequence
/// by id, kept for the retention; a lease naming the one replica that holds a sequence in memory; a fencing generation
/// so a replica that lost its lease cannot overwrite the state another replica resumed. Every operation answers a typed
/// <see cref="StoreResult"/> (never throws for the store's own trouble: a store that is down is
/// <see cref="StoreStatus.Unavailable"/>, fast, within the configured timeout).
/// </summary>
/// <remarks>
/// The lifecycle of one sequence on one replica: <see cref="BeginAsync"/> (start) or <see cref="AcquireAsync"/> (resume
/// what another replica or an idle spill left) takes the lease and returns the generation; <see cref="RenewAsync"/>
/// keeps the lease while the sequence lives in memory; <see cref="SpillAsync"/> writes its state (on idle or drain,
/// usually releasing the lease); <see cref="EndAsync"/> deletes it when the client ends it.
/// </remarks>
public interface ISequenceStore : IAsyncDisposable
{
    /// <summary>This replica's identity, the value of the leases it holds (distinct per process).</summary>
    string OwnerId { get; }

    /// <summary>How long a spilled sequence is kept after its last write.</summary>
    TimeSpan Retention { get; }

    /// <summary>How long a lease lives without renewal: a replica that died holds its sequences no longer than this.</summary>
    TimeSpan LeaseDuration { get; }

    /// <summary>A short description for logs and readiness ("redis 127.0.0.1:6379, prefix dualchunk:").</summary>
    string Description { get; }

    /// <summary>
    /// A sequence starts (or restarts) here: takes its lease and replaces whatever the store held for it with a record
    /// saying it started (so a later request elsewhere can tell "lost" from "never started").
    /// </summary>
    /// <returns><see cref="StoreStatus.Ok"/> with the new generation; <see cref="StoreStatus.HeldByOther"/> (the holder in
    /// <see cref="StoreResult.Holder"/>) when another replica holds it; <see cref="StoreStatus.Unavailable"/>.</returns>
    Task<StoreResult> BeginAsync(string sequenceId, string model, CancellationToken cancellationToken = default);

    /// <summary>
    /// A sequence not in this replica's memory: takes its lease (unless it ended) and returns what the store holds,
    /// with a new generation. The lease is taken only when the record exists and has not ended.
    /// </summary>
    /// <returns><see cref="StoreStatus.Ok"/> with the record; <see cref="StoreStatus.NotFound"/> (no record: never
    /// started, or the retention passed); <see cref="StoreStatus.HeldByOther"/>; <see cref="StoreStatus.Unavailable"/>.</returns>
    Task<StoreResult<StoredSequence>> AcquireAsync(string sequenceId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Writes a sequence's snapshot (<c>DualChunkStream.Snapshot()</c>) and the positions it holds, kept for
    /// <see cref="Retention"/>; releases the lease when <paramref name="releaseLease"/> (idle spill, drain) or renews it.
    /// </summary>
    /// <param name="sequenceId">The sequence.</param>
    /// <param name="generation">The generation <see cref="BeginAsync"/> or <see cref="AcquireAsync"/> returned: a write
    /// of an older generation (another replica resumed the sequence since) is refused as <see cref="StoreStatus.Fenced"/>.</param>
    /// <param name="model">The model name the sequence runs.</param>
    /// <param name="snapshot">The stream's snapshot bytes.</param>
    /// <param name="positions">Positions per batch row the snapshot holds.</param>
    /// <param name="releaseLease">True to release the lease after writing (the memory copy is being freed).</param>
    /// <param name="cancellationToken">Cancels the wait (the write may still happen).</param>
    Task<StoreResult> SpillAsync(string sequenceId, long generation, string model, ReadOnlyMemory<byte> snapshot, int positions, bool releaseLease,
        CancellationToken cancellationToken = default);

    /// <summary>Extends the lease (and the record's retention) while the sequence lives in this replica's memory.</summary>
    /// <returns><see cref="StoreStatus.Ok"/>; <see cref="StoreStatus.HeldByOther"/> or <see cref="StoreStatus.Fenced"/>
    /// when the lease was lost to another replica; <see cref="StoreStatus.Unavailable"/>.</returns>
    Task<StoreResult> RenewAsync(string sequenceId, long generation, CancellationToken cancellationToken = default);

    /// <summary>Releases the lease if this replica still holds it (compare-and-delete: never another replica's).</summary>
    Task<StoreResult> ReleaseAsync(string sequenceId, CancellationToken cancellationToken = default);

    /// <summary>
    /// The client ended the sequence: its state is deleted and the lease released; a small record saying it ended stays
    /// for <see cref="Retention"/>.
    /// </summary>
    Task<StoreResult> EndAsync(string sequenceId, long generation, CancellationToken cancellationToken = default);

    /// <summary>A round trip to the store (readiness).</summary>
    Task<StoreResult> PingAsync(CancellationToken cancellationToken = default);
}

/// <summary>What a store operation came to.</summary>
public enum StoreStatus
{
    /// <summary>Done.</summary>
    Ok,

    /// <summary>The store holds nothing for the sequence (never started here, or its retention passed).</summary>
    NotFound,

    /// <summary>Another replica holds the sequence's lease (<see cref="StoreResult.Holder"/> names it).</summary>
    HeldByOther,

    /// <summary>Another replica resumed the sequence since this one took it: this replica's copy is stale.</summary>
    Fenced,

    /// <summary>The snapshot is larger than the store accepts.</summary>
    TooLarge,

    /// <summary>The store could not be reached or answered an error or too late (the message says which).</summary>
    Unavailable,
}

/// <summary>The outcome of a store operation: a status, a message for logs and clients, and for leases the generation and holder.</summary>
/// <param name="Status">What happened.</param>
/// <param name="Message">Why, for logs and error answers; empty when <see cref="StoreStatus.Ok"/>.</param>
/// <param name="Generation">The sequence's generation after <see cref="ISequenceStore.BeginAsync"/>; 0 otherwise.</param>
/// <param name="Holder">The replica holding the lease when <see cref="StoreStatus.HeldByOther"/>.</param>
public readonly record struct StoreResult(StoreStatus Status, string Message, long Generation = 0, string? Holder = null)
{
    /// <summary>True when <see cref="Status"/> is <see cref="StoreStatus.Ok"/>.</summary>
    public bool IsOk => Status == StoreStatus.Ok;

    internal static StoreResult Ok(long generation = 0) => new(StoreStatus.Ok, "", generation);
}

/// <summary>The outcome of a store operation that returns a value (<see cref="Value"/> set when <see cref="StoreStatus.Ok"/>).</summary>
/// <param name="Status">What happened.</param>
/// <param name="Message">Why, for logs and error answers; empty when <see cref="StoreStatus.Ok"/>.</param>
/// <param name="Value">The value when <see cref="StoreStatus.Ok"/>.</param>
/// <param name="Holder">The replica holding the lease when <see cref="StoreStatus.HeldByOther"/>.</param>
public readonly record struct StoreResult<T>(StoreStatus Status, string Message, T? Value = default, string? Holder = null) where T : class
{
    /// <summary>True when <see cref="Status"/> is <see cref="StoreStatus.Ok"/> (and <see cref="Value"/> is set).</summary>
    public bool IsOk => Status == StoreStatus.Ok;

    /// <summary>This result's status, message and holder without a value.</summary>
    public StoreResult WithoutValue => new(Status, Message, 0, Holder);

    internal static StoreResult<T> From(StoreResult result) => new(result.Status, result.Message, null, result.Holder);
}

/// <summary>What the store holds for a sequence.</summary>
public sealed class StoredSequence
{
    /// <summary>The generation this replica now holds it at (pass it to <see cref="ISequenceStore.SpillAsync"/>).</summary>
    public required long Generation { get; init; }

    /// <summary>The model name the sequence runs.</summary>
    public required string Model { get; init; }

    /// <summary>When the sequence started.</summary>
    public required DateTimeOffset Started { get; init; }

    /// <summary>The replica that last wrote the record.</summary>
    public required string LastOwner { get; init; }

    /// <summary>When it ended (the client ended it), or null while it is open.</summary>
    public DateTimeOffset? Ended { get; init; }

    /// <summary>When its state was last spilled, or null if it never was (its owner stopped without spilling: lost).</summary>
    public DateTimeOffset? Spilled { get; init; }

    /// <summary>Positions per batch row the snapshot holds (0 without a snapshot).</summary>
    public int Positions { get; init; }

    /// <summary>The snapshot bytes (<c>DualChunkStream.Restore</c> checks them), or null if it never spilled.</summary>
    public byte[]? Snapshot { get; init; }
}
