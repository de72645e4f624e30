namespace DualChunk.Server.Sequences.Store;

/// <summary>
/// The sequence store, bound from configuration section <c>Sequences:Store</c> (docs/deploy.md "Sequences across
/// replicas"). Without <see cref="Redis"/> there is no store and sequences live only in the replica that holds them.
/// </summary>
public sealed class SequenceStoreOptions
{
    /// <summary>The configuration section: <c>Sequences:Store</c>.</summary>
    public const string Section = "Sequences:Store";

    /// <summary>
    /// A StackExchange.Redis connection string (<c>127.0.0.1:6379</c>, <c>redis.example:6380,ssl=true,password=...</c>);
    /// null or empty for no store. On the command line: <c>--Sequences:Store:Redis 127.0.0.1:6379</c>.
    /// </summary>
    public string? Redis { get; set; }

    /// <summary>
    /// Prepended to every key, so one Redis serves several deployments (default <c>dualchunk:</c>). No braces: the
    /// keys of one sequence share a <c>{id}</c> hash tag so a cluster keeps them on one slot.
    /// </summary>
    public string KeyPrefix { get; set; } = "dualchunk:";

    /// <summary>How long the store keeps a spilled sequence after its last write (a Redis TTL; default 24 h).</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromHours(24);

    /// <summary>
    /// How long a replica's lease on a sequence lives without renewal (default 30 s; renewed every third of it): how
    /// long a sequence whose replica died stays unavailable to the others.
    /// </summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Bound on one store operation, connecting included (default 2 s): a slow or absent Redis costs a request at most
    /// this, and the replica keeps serving what it holds in memory.
    /// </summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// This replica's name in leases (default: the host name, the process id and a random suffix). Must differ
    /// between replicas sharing a Redis; the default does.
    /// </summary>
    public string? OwnerId { get; set; }

    /// <summary>Largest snapshot the store accepts, in bytes (default 512 MiB, Redis's largest string).</summary>
    public long MaxSnapshotBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>True when a store is configured.</summary>
    public bool IsConfigured => !string.IsNullOrWhiteSpace(Redis);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting out of range and its fix.</summary>
    public void Validate()
    {
        if (string.IsNullOrEmpty(KeyPrefix) || KeyPrefix.Contains('{', StringComparison.Ordinal) || KeyPrefix.Contains('}', StringComparison.Ordinal))
            throw new ArgumentException($"{Section}:KeyPrefix '{KeyPrefix}' must be non-empty and hold no braces (e.g. 'dualchunk:prod:').", nameof(KeyPrefix));
        if (Retention < TimeSpan.FromSeconds(1))
            throw new ArgumentException($"{Section}:Retention is {Retention}; it must be at least 1 s (default 24 h).", nameof(Retention));
        if (LeaseDuration < TimeSpan.FromMilliseconds(300))
            throw new ArgumentException($"{Section}:LeaseDuration is {LeaseDuration}; it must be at least 300 ms (default 30 s).", nameof(LeaseDuration));
        if (OperationTimeout < TimeSpan.FromMilliseconds(50) || OperationTimeout > TimeSpan.FromMinutes(1))
            throw new ArgumentException($"{Section}:OperationTimeout is {OperationTimeout}; it must be within 50 ms..1 min (default 2 s).", nameof(OperationTimeout));
        if (MaxSnapshotBytes < 64 || MaxSnapshotBytes > 512L * 1024 * 1024)
            throw new ArgumentException($"{Section}:MaxSnapshotBytes is {MaxSnapshotBytes}; it must be within 64..536870912 (Redis's largest string).", nameof(MaxSnapshotBytes));
        if (OwnerId is { } owner && (owner.Length == 0 || owner.Length > 200))
            throw new ArgumentException($"{Section}:OwnerId must be 1..200 characters; leave it unset for a unique default.", nameof(OwnerId));
    }
}
