using Queue.Ingress;

var builder = WebApplication.CreateBuilder(args);
builder.AddQueueServiceDefaults();
builder.AddQueueAdapters();
builder.AddIngress();

var app = builder.Build();
app.UseExceptionHandler();
app.UseStatusCodePages();
app.MapQueueDefaultEndpoints();
app.MapJobsApi();
app.MapBlobsApi();
app.Run();
