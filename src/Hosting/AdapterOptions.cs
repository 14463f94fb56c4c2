namespace Queue.Hosting;

/// <summary>Which technology backs each port. Only configuration picks adapters; the code paths are the same.</summary>
public sealed class AdapterOptions
{
    public const string Section = "Queue:Adapters";

    /// <summary><c>embedded</c> (in-process; default), <c>rabbitmq</c> (<c>Queue:RabbitMq</c>), <c>azurequeue</c> (<c>Queue:Azure</c>) or <c>servicebus</c> (<c>Queue:ServiceBus</c>).</summary>
    public string WorkQueue { get; set; } = "embedded";

    /// <summary><c>filesystem</c> (default) or <c>azureblob</c> (<c>Queue:Azure</c>).</summary>
    public string BlobStore { get; set; } = "filesystem";

    /// <summary><c>embedded</c> (in-process; default) or <c>etcd</c> (<c>Queue:Etcd</c>).</summary>
    public string Coordination { get; set; } = "embedded";

    /// <summary>Root folder of the filesystem blob store, one subfolder per container. Default <c>./data</c>.</summary>
    public string DataPath { get; set; } = "data";

    /// <summary>
    /// Whether the embedded coordination store keeps its log in <c>{DataPath}/.state</c> so jobs survive a
    /// restart. Default true; false keeps it in memory only.
    /// </summary>
    public bool PersistEmbeddedState { get; set; } = true;

    public bool IsEmbeddedQueue => string.Equals(WorkQueue, "embedded", StringComparison.OrdinalIgnoreCase);
}
